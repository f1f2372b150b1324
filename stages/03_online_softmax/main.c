/* build/bin/03_online_softmax: online softmax (two sweeps), the row-on-chip
 * variants (one load, one store; stage 02's safe-onchip beside stage 03's
 * merge-onchip), and the paths beyond one SM: online-split and merge-wave
 * (its one-wave, one-kernel successor) for few long rows, merge-cluster and
 * merge-persist (its persistent clusters) for rows held across a thread-block
 * cluster; against stage 02's safe softmax on the same input. Answers Q3.
 * Each path says whether it applies to the shape, and why; after the tables,
 * which path was fastest for each shape (read back from the run's CSV rows:
 * the driver's table has no such line, and six paths apply to some shapes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../02_safe_softmax/safe.h"
#include "online.h"

/* Field k of a CSV line (no quoting: the driver writes none), into out. */
static void field(const char *line, int k, char *out, size_t n)
{
    for (; k > 0 && line; k--) {
        line = strchr(line, ',');
        if (line) line++;
    }
    size_t len = line ? strcspn(line, ",\r\n") : 0;
    if (len >= n) len = n - 1;
    memcpy(out, line ? line : "", len);
    out[len] = 0;
}

static int column(const char *header, const char *key)
{
    char f[64];
    for (int k = 0; k < 64; k++) {
        field(header, k, f, sizeof f);
        if (!strcmp(f, key)) return k;
    }
    return -1;
}

/* The fastest correct path of each shape among the CSV lines after the
 * first `skip` data lines (those of earlier runs). */
static void print_fastest(const char *path, long skip)
{
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[4096], header[4096] = "";
    if (!fgets(header, sizeof header, f)) {
        fclose(f);
        return;
    }
    const int ci = column(header, "impl"), cr = column(header, "rows"), cc = column(header, "cols"),
              cd = column(header, "dtype"), cg = column(header, "gbps"), co = column(header, "ok");
    if (ci < 0 || cr < 0 || cc < 0 || cd < 0 || cg < 0 || co < 0) {
        fclose(f);
        return;
    }
    char shape[128] = "", best[64] = "", second[64] = "";
    double g1 = 0, g2 = 0;
    for (long i = 0;; i++) {
        const int more = fgets(line, sizeof line, f) != NULL;
        char r[32] = "", c[32] = "", d[16] = "", s[128] = "";
        if (more) {
            field(line, cr, r, sizeof r);
            field(line, cc, c, sizeof c);
            field(line, cd, d, sizeof d);
            snprintf(s, sizeof s, "%s x %s %s", r, c, d);
        }
        if (i > skip && (!more || strcmp(s, shape))) {
            if (g1 > 0 && g2 > 0)
                printf("fastest for %s: %s, %.1f GB/s (next: %s, %.1f GB/s)\n", shape, best, g1, second, g2);
            else if (g1 > 0)
                printf("fastest for %s: %s, %.1f GB/s\n", shape, best, g1);
            g1 = g2 = 0;
        }
        if (!more) break;
        if (i < skip) continue;
        snprintf(shape, sizeof shape, "%s", s);
        char impl[64], gb[32], ok[32];
        field(line, ci, impl, sizeof impl);
        field(line, cg, gb, sizeof gb);
        field(line, co, ok, sizeof ok);
        const double g = atof(gb);
        if (strncmp(ok, "yes", 3) || g <= 0) continue;
        if (g > g1) {
            g2 = g1;
            snprintf(second, sizeof second, "%s", best);
            g1 = g;
            snprintf(best, sizeof best, "%s", impl);
        } else if (g > g2) {
            g2 = g;
            snprintf(second, sizeof second, "%s", impl);
        }
    }
    fclose(f);
}

static long data_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    long n = 0;
    int ch, last = '\n';
    while ((ch = fgetc(f)) != EOF) {
        n += ch == '\n';
        last = ch;
    }
    fclose(f);
    n += last != '\n';
    return n > 0 ? n - 1 : 0; /* without the header */
}

int main(int argc, char **argv)
{
    static const softmax_impl_t *const impls[] = { &IMPL_SAFE,         &IMPL_SAFE_ONCHIP, &IMPL_ONLINE,
                                                   &IMPL_MERGE_ONCHIP, &IMPL_ONLINE_SPLIT, &IMPL_MERGE_WAVE,
                                                   &IMPL_MERGE_CLUSTER, &IMPL_MERGE_PERSIST };
    const softmax_stage_t st = {
        "03_online_softmax",
        "stage 03, online softmax, the row on chip (one SM, or a cluster), rows split across blocks; "
        "against stage 02's safe softmax",
        impls, 8, 2,
    };
    /* The run's rows go to the user's --csv, or to a temporary one. */
    const char *csv = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[i + 1];
        else if (!strncmp(argv[i], "--csv=", 6)) csv = argv[i] + 6;
    }
    char tmp[] = "/tmp/stf03_fastest_XXXXXX";
    char **av = argv;
    if (!csv) {
        const int fd = mkstemp(tmp);
        av = malloc(sizeof *av * (size_t)(argc + 3));
        if (fd < 0 || !av) return softmax_stage_main(&st, argc, argv); /* no table of the fastest, then */
        close(fd);
        memcpy(av, argv, sizeof *av * (size_t)argc);
        av[argc] = "--csv";
        av[argc + 1] = tmp;
        av[argc + 2] = NULL;
        csv = tmp;
    }
    const long before = data_lines(csv);
    const int rc = softmax_stage_main(&st, av == argv ? argc : argc + 2, av);
    if (rc == 0 || rc == 1) print_fastest(csv, before);
    if (av != argv) {
        unlink(tmp);
        free(av);
    }
    return rc;
}
