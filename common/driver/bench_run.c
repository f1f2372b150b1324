#include "bench_run.h"

#include <stdio.h>
#include <string.h>

#include "gpu.h"
#include "hwcounters.h"
#include "report.h"
#include "timing.h"

void bench_checked_run(const bench_job_t *j)
{
    if (j->gpu) {
        gpu_poison(j->out, j->out_bytes);
        j->run(j->arg);
        gpu_sync();
    } else {
        memset(j->out, 0xff, j->out_bytes);
        j->run(j->arg);
    }
}

void bench_measure(const bench_job_t *j, bench_meas_t *m)
{
    snprintf(m->measured, sizeof m->measured, "%s", j->gpu ? "n/a" : "-");
    m->measured_raw[0] = 0;
    if (j->gpu && hwc_available()) {
        double rd = 0, wr = 0;
        gpu_sync();
        if (hwc_begin() == 0) {
            j->run(j->arg);
            if (hwc_end(&rd, &wr) == 0) {
                snprintf(m->measured, sizeof m->measured, "%.6g", (rd + wr) / 1e6);
                snprintf(m->measured_raw, sizeof m->measured_raw, "%.0f", rd + wr);
            }
        }
    }
    m->ms = j->gpu ? gpu_time_median_ms(j->run, j->arg, j->warmup, j->iters, 1)
                   : cpu_time_median_ms(j->run, j->arg, j->warmup, j->iters);
}

const char *bench_ok_cell(int ok, size_t excused, size_t unresolved)
{
    if (!ok) return unresolved ? "NO: unresolved" : "NO";
    /* no comma in a cell: the CSV stays splittable by awk -F, (and is quoted per RFC 4180 anyway) */
    return excused ? fmt("yes (%zu excused)", excused) : "yes";
}
