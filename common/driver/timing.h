/* Host timing: a monotonic clock and the median of repeated runs. */
#ifndef STF_TIMING_H
#define STF_TIMING_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

double cpu_now_s(void);
/* Sorts v in place and returns its median. */
double median(double *v, size_t n);
/* Median wall time in ms of fn(arg) over iters runs after warmup runs. */
double cpu_time_median_ms(void (*fn)(void *), void *arg, int warmup, int iters);
/* memcpy bandwidth of this host in GB/s (bytes read + written), on `bytes`
 * (at least 64 MiB so caches do not serve it); measured once and cached. */
double cpu_copy_gbps(size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
