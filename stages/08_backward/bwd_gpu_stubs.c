/* Stage 08 in a build without CUDA: the GPU contract of backward.h answers
 * "no GPU kernel in this build" (the kernels' .cu files are not compiled). */
#include <stdio.h>

#include "backward.h"
#include "gpu.h"

#if !HAVE_CUDA
const char *bwd_gpu_name(int kern)
{
    static const char *const names[] = { "bwd-standard", "bwd-fa2", "bwd-tc-atomic", "bwd-tc-det", "bwd-tc-k32" };
    return kern >= 0 && kern < BWD_GPU_NKERNELS ? names[kern] : "?";
}
int bwd_gpu_supports(int kern, const attn_shape_t *s, char *why, size_t n)
{
    (void)kern; (void)s;
    snprintf(why, n, "%s", gpu_unavailable_reason());
    return 0;
}
size_t bwd_gpu_ws_bytes(int kern, const attn_shape_t *s)
{
    (void)kern; (void)s;
    return 0;
}
void bwd_gpu_tiles(int kern, const attn_shape_t *s, int *br, int *bc)
{
    (void)kern; (void)s;
    *br = *bc = 0;
}
int bwd_gpu_forward(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o, float *lse)
{
    (void)s; (void)q; (void)k; (void)v; (void)o; (void)lse;
    return -1;
}
int bwd_gpu_forward_kind(const attn_shape_t *s)
{
    (void)s;
    return -1;
}
int bwd_gpu_launch(int kern, const attn_shape_t *s, const void *q, const void *k, const void *v, const void *o,
                   const void *dout, const float *lse, void *dq, void *dk, void *dv, void *ws)
{
    (void)kern; (void)s; (void)q; (void)k; (void)v; (void)o; (void)dout; (void)lse; (void)dq; (void)dk; (void)dv; (void)ws;
    return -1;
}
#else
/* ISO C forbids an empty translation unit */
typedef int stf_stage08_gpu_stubs_unused;
#endif
