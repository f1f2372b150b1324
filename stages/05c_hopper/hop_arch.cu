/* Whether this build compiled stage 05c's kernels for sm_90a (the Makefile
 * sets HOP_SM90A with -gencode arch=compute_90a,code=sm_90a when CUDA_ARCH
 * is 90): the launchers decline the shapes of a build without it. */
#include "hop_common.cuh"

extern "C" int hop_built_sm90a(void) { return HOP_SM90A; }
