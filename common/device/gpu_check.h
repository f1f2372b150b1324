/* Error checking for CUDA runtime calls and kernel launches, in .cu and
 * CUDA-enabled .c files alike. Every call goes through CUDA_CHECK and every
 * launch is followed by LAUNCH_CHECK(): a failure names the file, the line and
 * the call, then exits with status 1. */
#ifndef STF_GPU_CHECK_H
#define STF_GPU_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

static inline void stf_cuda_check(cudaError_t e, const char *what, const char *file, int line)
{
    if (e != cudaSuccess) {
        fprintf(stderr, "%s:%d: CUDA error %d (%s): %s\n  in: %s\n", file, line, (int)e,
                cudaGetErrorName(e), cudaGetErrorString(e), what);
        exit(1);
    }
}

#define CUDA_CHECK(call) stf_cuda_check((call), #call, __FILE__, __LINE__)
/* After a <<<...>>> launch: catches bad configurations at once; errors inside
 * the kernel surface at the next synchronising call, which is checked too. */
#define LAUNCH_CHECK() stf_cuda_check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

#endif
