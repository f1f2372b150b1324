/* Stand-ins for common/device/gpu.cu when the build has no nvcc: the programs run on
 * the CPU and say why the GPU is not there. None of the others is reachable,
 * because every caller asks gpu_available() first; they fail loudly if not. */
#include "gpu.h"

#if !HAVE_CUDA
#include <stdio.h>
#include <stdlib.h>

int gpu_available(void) { return 0; }
/* STF_NVCC_EMPTY (the Makefile): 1 when NVCC= was given on purpose */
const char *gpu_unavailable_reason(void)
{
    return STF_NVCC_EMPTY ? "this build has no CUDA: built with NVCC= empty (the CPU-only programs)"
                          : "this build has no CUDA: nvcc was not found at build time";
}

static void no_gpu(const char *fn)
{
    fprintf(stderr, "internal error: %s called in a build without CUDA\n", fn);
    exit(1);
}

void gpu_info(gpu_info_t *info) { (void)info; no_gpu(__func__); }
void *gpu_try_malloc(size_t bytes) { (void)bytes; no_gpu(__func__); return NULL; }
void *gpu_malloc(size_t bytes, const char *what) { (void)bytes; (void)what; no_gpu(__func__); return NULL; }
void gpu_free(void *p) { (void)p; }
void gpu_mem_info(size_t *f, size_t *t) { (void)f; (void)t; no_gpu(__func__); }
void gpu_h2d(void *d, const void *s, size_t b) { (void)d; (void)s; (void)b; no_gpu(__func__); }
void gpu_d2h(void *d, const void *s, size_t b) { (void)d; (void)s; (void)b; no_gpu(__func__); }
void gpu_d2h_rows(void *d, const void *s, size_t f, size_t r, size_t b) { (void)d; (void)s; (void)f; (void)r; (void)b; no_gpu(__func__); }
void gpu_sync(void) { no_gpu(__func__); }
void gpu_fill_logits(void *d, dtype_t dt, size_t n, uint64_t seed, uint32_t stream, float scale)
{ (void)d; (void)dt; (void)n; (void)seed; (void)stream; (void)scale; no_gpu(__func__); }
void gpu_poison(void *d, size_t b) { (void)d; (void)b; no_gpu(__func__); }
size_t gpu_count_nonfinite(const void *d, dtype_t dt, size_t n) { (void)d; (void)dt; (void)n; no_gpu(__func__); return 0; }
void gpu_flush_l2(void) { no_gpu(__func__); }
double gpu_time_median_ms(void (*fn)(void *), void *arg, int w, int i, int f)
{ (void)fn; (void)arg; (void)w; (void)i; (void)f; no_gpu(__func__); return 0; }
double gpu_copy_gbps(void) { no_gpu(__func__); return 0; }
#else
typedef int stf_gpu_stub_unused; /* ISO C forbids an empty translation unit */
#endif
