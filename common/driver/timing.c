#include "timing.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double cpu_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double median(double *v, size_t n)
{
    if (!n) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double cpu_time_median_ms(void (*fn)(void *), void *arg, int warmup, int iters)
{
    for (int i = 0; i < warmup; i++) fn(arg);
    double *t = malloc(sizeof *t * (size_t)iters);
    if (!t) return 0;
    for (int i = 0; i < iters; i++) {
        double t0 = cpu_now_s();
        fn(arg);
        t[i] = 1e3 * (cpu_now_s() - t0);
    }
    double m = median(t, (size_t)iters);
    free(t);
    return m;
}

double cpu_copy_gbps(size_t bytes)
{
    static double cached;
    if (cached > 0) return cached;
    if (bytes < (64u << 20)) bytes = 64u << 20;
    char *a = malloc(bytes), *b = malloc(bytes);
    if (!a || !b) { free(a); free(b); return 0; }
    memset(a, 1, bytes);
    memset(b, 2, bytes); /* fault the pages in before timing */
    double t[7];
    for (int i = 0; i < 7; i++) {
        double t0 = cpu_now_s();
        memcpy(i % 2 ? a : b, i % 2 ? b : a, bytes);
        t[i] = cpu_now_s() - t0;
    }
    volatile char sink = a[bytes / 2] + b[bytes / 3];
    (void)sink;
    free(a);
    free(b);
    cached = 2.0 * (double)bytes / median(t, 7) / 1e9;
    return cached;
}
