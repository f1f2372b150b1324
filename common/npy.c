#include "npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int ensure_dir(const char *path)
{
    if (mkdir(path, 0777) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
    }
    fprintf(stderr, "error: cannot create directory '%s': %s\n", path, strerror(errno));
    return -1;
}

int npy_write_f32(const char *path, const float *data, const size_t *shape, int ndim)
{
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%zu,%s", shape[i], i + 1 < ndim ? " " : "");
        count *= shape[i];
    }
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    /* magic(6) + version(2) + header length(2) + dict, padded with spaces and a
     * final newline to a multiple of 64 bytes */
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    unsigned short hlen = (unsigned short)((size_t)n + pad + 1);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "error: cannot write '%s': %s\n", path, strerror(errno));
        return -1;
    }
    unsigned char head[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8) };
    fwrite(head, 1, 10, f);
    fwrite(dict, 1, (size_t)n, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    size_t w = fwrite(data, sizeof(float), count, f);
    if (fclose(f) || w != count) {
        fprintf(stderr, "error: short write to '%s'\n", path);
        return -1;
    }
    return 0;
}

int npy_read_f32(const char *path, int want_ndim, float **data, size_t *shape)
{
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "error: cannot open '%s': %s\n", path, strerror(errno));
        return -1;
    }
    unsigned char head[10];
    char dict[4096];
    if (fread(head, 1, 10, f) != 10 || memcmp(head, "\x93NUMPY", 6) || head[6] != 1) {
        fprintf(stderr, "error: '%s' is not a version-1 .npy file\n", path);
        fclose(f);
        return -1;
    }
    size_t hlen = (size_t)head[8] | ((size_t)head[9] << 8);
    if (hlen >= sizeof dict || fread(dict, 1, hlen, f) != hlen) {
        fprintf(stderr, "error: '%s': bad .npy header\n", path);
        fclose(f);
        return -1;
    }
    dict[hlen] = 0;
    if (!strstr(dict, "'descr': '<f4'")) {
        fprintf(stderr, "error: '%s' must hold float32 ('<f4'); convert with x.astype(np.float32)\n", path);
        fclose(f);
        return -1;
    }
    if (!strstr(dict, "'fortran_order': False")) {
        fprintf(stderr, "error: '%s' is in Fortran order; save a C-ordered array\n", path);
        fclose(f);
        return -1;
    }
    const char *s = strstr(dict, "'shape': (");
    int nd = 0;
    size_t count = 1;
    if (s) {
        s += 10;
        while (*s && *s != ')') {
            char *end;
            unsigned long long v = strtoull(s, &end, 10);
            if (end == s) break;
            if (nd < NPY_MAX_DIMS) shape[nd] = (size_t)v;
            nd++;
            count *= (size_t)v;
            s = end;
            while (*s == ',' || *s == ' ') s++;
        }
    }
    if (nd != want_ndim) {
        fprintf(stderr, "error: '%s' has %d dimensions; %d expected\n", path, nd, want_ndim);
        fclose(f);
        return -1;
    }
    if (count == 0) {
        fprintf(stderr, "error: '%s' is empty (a dimension is 0)\n", path);
        fclose(f);
        return -1;
    }
    float *p = malloc(count * sizeof(float));
    if (!p) {
        fprintf(stderr, "error: out of host memory reading '%s'\n", path);
        fclose(f);
        return -1;
    }
    if (fread(p, sizeof(float), count, f) != count) {
        fprintf(stderr, "error: '%s' is truncated\n", path);
        free(p);
        fclose(f);
        return -1;
    }
    fclose(f);
    *data = p;
    return 0;
}
