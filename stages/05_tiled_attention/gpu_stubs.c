/* Stage 05 in a build without CUDA: the kernels' info queries answer "no
 * GPU kernel in this build" (the launchers are not referenced: GPU_FN makes
 * them NULL). */
#include <stdio.h>

#include "tiled.h"

#if !HAVE_CUDA
static int none(char *why, size_t n)
{
    snprintf(why, n, "no GPU kernel in this build (nvcc was not found)");
    return 0;
}
int attention_fa1_gpu_info(const attn_shape_t *s, tiled_gpu_info_t *info, char *why, size_t n)
{
    (void)s; (void)info;
    return none(why, n);
}
int attention_fa2_gpu_info(const attn_shape_t *s, tiled_gpu_info_t *info, char *why, size_t n)
{
    (void)s; (void)info;
    return none(why, n);
}
int attention_fa2_regtile_gpu_info(const attn_shape_t *s, int br, tiled_gpu_info_t *info, char *why, size_t n)
{
    (void)s; (void)br; (void)info;
    return none(why, n);
}
#else
/* ISO C forbids an empty translation unit */
typedef int stf_stage05_gpu_stubs_unused;
#endif
