/* Stage 06 on the GPU, besides the decode kernel (decode_gpu.cu): repeat_kv,
 * the copy the replicated method pays for; the lengths array of --varlen; and
 * the read-only ceiling that decode bandwidth is measured against.
 *
 * repeat_kv: K [B, Hkv, Nk, d] -> [B, Hq, Nk, d], destination slice (b, h)
 * from source slice (b, h / g): one 16-byte load and store per thread and
 * step. Traffic: reads 2 B Hkv Nk d es from DRAM (the g - 1 re-reads of a
 * source slice hit the L2 while the g copies are written), writes
 * 2 B Hq Nk d es; the copy also needs that much extra memory.
 *
 * read ceiling: a kernel that only reads (16-byte streaming loads, four in
 * flight per thread, 2048 threads per SM) the K/V bytes of the shape, timed
 * as the implementations are: L2 flushed before each run, median.
 *
 * Run: through build/bin/06_gqa_attention (replicated rows; "read-only ceiling" line in decode) */
#include <stdint.h>
#include <stdlib.h>

#include "gpu.h"
#include "gpu_check.h"
#include "gqa.h"

__global__ void repeat_kv_kernel16(const uint4 *__restrict__ src, uint4 *__restrict__ dst, unsigned long long slice16,
                                   unsigned long long total16, int Hq, int g, int Hkv)
{
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < total16;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned long long sl = i / slice16, x = i % slice16; /* destination slice b Hq + h */
        const unsigned long long b = sl / Hq, h = sl % Hq;
        dst[i] = src[(b * Hkv + h / g) * slice16 + x];
    }
}

__global__ void repeat_kv_kernel2(const uint16_t *__restrict__ src, uint16_t *__restrict__ dst,
                                  unsigned long long slice, unsigned long long total, int Hq, int g, int Hkv)
{
    for (unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned long long sl = i / slice, x = i % slice;
        const unsigned long long b = sl / Hq, h = sl % Hq;
        dst[i] = src[(b * Hkv + h / g) * slice + x];
    }
}

static int sm_count(void)
{
    static int n = 0;
    if (!n) {
        gpu_info_t info;
        gpu_info(&info);
        n = info.sm_count;
    }
    return n;
}

extern "C" void gqa_repeat_kv_gpu(const attn_shape_t *s, const void *src, void *dst)
{
    const size_t es = dtype_size(s->dt), slice_bytes = s->seq_kv * s->dim * es;
    const unsigned long long total_bytes = (unsigned long long)s->batch * s->heads * slice_bytes;
    const int g = (int)(s->heads / s->kv_heads), blocks = sm_count() * 8;
    if (slice_bytes % 16 == 0)
        repeat_kv_kernel16<<<blocks, 256>>>((const uint4 *)src, (uint4 *)dst, slice_bytes / 16, total_bytes / 16,
                                            (int)s->heads, g, (int)s->kv_heads);
    else /* every supported type is a multiple of 2 bytes */
        repeat_kv_kernel2<<<blocks, 256>>>((const uint16_t *)src, (uint16_t *)dst, slice_bytes / 2, total_bytes / 2,
                                           (int)s->heads, g, (int)s->kv_heads);
    LAUNCH_CHECK();
}

/* ---- --varlen: the lengths a serving stack would keep on the device; built
 * once per (B, Nk) and kept, so the timed runs see only the kernel. */
static int *g_lengths = NULL;

/* at exit, so that compute-sanitizer's leak check sees every allocation freed */
static void free_lengths(void)
{
    if (g_lengths) (void)cudaFree(g_lengths);
    g_lengths = NULL;
}

extern "C" const int *gqa_device_lengths(const attn_shape_t *s)
{
    int *&dev = g_lengths;
    static size_t cap = 0, key_b = 0, key_n = 0;
    if (!s->varlen) return NULL;
    if (dev && key_b == s->batch && key_n == s->seq_kv) return dev;
    if (cap < s->batch) {
        if (dev) gpu_free(dev);
        else atexit(free_lengths);
        dev = (int *)gpu_malloc(s->batch * sizeof(int), "K/V lengths");
        cap = s->batch;
    }
    int *h = (int *)malloc(s->batch * sizeof(int));
    if (!h) {
        fprintf(stderr, "gqa: out of host memory for the lengths\n");
        exit(1);
    }
    for (size_t b = 0; b < s->batch; b++) h[b] = (int)attn_kv_len(s, b);
    gpu_h2d(dev, h, s->batch * sizeof(int));
    free(h);
    key_b = s->batch;
    key_n = s->seq_kv;
    return dev;
}

/* ---- the read-only ceiling */

__global__ void __launch_bounds__(256) read_only_kernel(const uint4 *__restrict__ p, unsigned long long n16,
                                                        unsigned *sink)
{
    unsigned acc = 0;
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n16; i += 4 * stride) {
        const uint4 a = __ldcs(p + i), b = __ldcs(p + i + stride), c = __ldcs(p + i + 2 * stride),
                    d = __ldcs(p + i + 3 * stride);
        acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^ d.z ^ d.w;
    }
    for (; i < n16; i += stride) {
        const uint4 a = __ldcs(p + i);
        acc ^= a.x ^ a.y ^ a.z ^ a.w;
    }
    if (acc == 0x9e3779b9u) *sink = acc; /* keeps the loads; practically never stores */
}

struct read_arg { const void *p; unsigned long long n16; unsigned *sink; int blocks; };

static void read_run(void *a)
{
    read_arg *r = (read_arg *)a;
    read_only_kernel<<<r->blocks, 256>>>((const uint4 *)r->p, r->n16, r->sink);
    LAUNCH_CHECK();
}

extern "C" double gqa_read_ceiling_gbps(const attn_shape_t *s)
{
    static double cached_bytes = -1, cached_gbps = 0;
    if (!gpu_available()) return 0.0;
    const double bytes = attn_kv_bytes_once(s);
    if (bytes == cached_bytes) return cached_gbps;
    const size_t n = ((size_t)bytes + 15) / 16 * 16;
    void *buf = gpu_try_malloc(n);
    unsigned *sink = (unsigned *)gpu_try_malloc(sizeof(unsigned));
    double gbps = 0.0;
    if (buf && sink) {
        gpu_fill_logits(buf, DT_F32, n / 4, 1234, 7, 1.0f); /* not zeros */
        read_arg a = { buf, n / 16, sink, sm_count() * 8 };
        const double ms = gpu_time_median_ms(read_run, &a, 3, 20, 1);
        gbps = bytes / (ms * 1e-3) / 1e9;
    }
    gpu_free(buf);
    gpu_free(sink);
    cached_bytes = bytes;
    cached_gbps = gbps;
    return gbps;
}
