/* Stage 04's cuBLAS machinery (standard_gpu.cu), for every .cu file that
 * calls cuBLAS, here and in later stages (stage 08's standard backward): one
 * handle for the process, fp32 accumulation throughout (no reduced-precision
 * split-K sums), and the status check. CUDA sources only (cuBLAS types). */
#ifndef STF_STAGE04_STANDARD_GPU_H
#define STF_STAGE04_STANDARD_GPU_H

#include <cublas_v2.h>

/* The handle, created on first use on the legacy default stream, destroyed
 * at exit. */
cublasHandle_t attn_cublas_handle(void);

/* Prints file:line, the status and the call, and exits 1 on failure. */
void attn_cublas_check(cublasStatus_t st, const char *what, const char *file, int line);
#define CUBLAS_CHECK(call) attn_cublas_check((call), #call, __FILE__, __LINE__)

#endif
