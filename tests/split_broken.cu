/* Tests only: two broken combines for stage 07's partial states, as kernels,
 * so that tests/test_split_kv.c can show that its GPU check fails a wrong
 * combine (the production kernels carry no fault hooks). mode 0: the partial
 * outputs summed without the rescale e^{m_z - M}; mode 1: the last split
 * dropped. One thread per (row, column). */
#include "gpu_check.h"
#include "softmax_device.cuh"
#include "../stages/07_split_kv_decode/split.h"

template <typename T>
__global__ void broken_combine_kernel(const float *pm, const float *pl, const float *po, T *o, int rows, int splits,
                                      int d, int mode)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)rows * d) return;
    const int row = (int)(i / d), c = (int)(i % d);
    float L = 0.0f, O = 0.0f;
    for (int z = 0; z < splits - mode; z++) {
        const size_t at = (size_t)z * rows + row;
        (void)pm[at];
        L += pl[at];
        O += po[at * d + c];
    }
    o[(size_t)row * d + c] = from_f<T>(L == 0.0f ? 0.0f : O / L);
}

extern "C" void test_split_broken_combine_gpu(const attn_shape_t *s, int splits, const float *pm, const float *pl,
                                              const float *po, void *o, int mode)
{
    const int rows = (int)attn_rows(s), d = (int)s->dim, blocks = (rows * d + 255) / 256;
    if (s->dt == DT_F16) broken_combine_kernel<__half><<<blocks, 256>>>(pm, pl, po, (__half *)o, rows, splits, d, mode);
    else if (s->dt == DT_BF16)
        broken_combine_kernel<__nv_bfloat16><<<blocks, 256>>>(pm, pl, po, (__nv_bfloat16 *)o, rows, splits, d, mode);
    else broken_combine_kernel<float><<<blocks, 256>>>(pm, pl, po, (float *)o, rows, splits, d, mode);
    LAUNCH_CHECK();
}
