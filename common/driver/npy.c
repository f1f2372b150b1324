/* The .npy format (NumPy's numpy/lib/format.py documents it): the magic
 * "\x93NUMPY", a version (1.0, 2.0 or 3.0), the header length (2 bytes in
 * 1.0, 4 after), then the header: a Python dict literal with exactly the keys
 * 'descr', 'fortran_order' and 'shape', padded with spaces and a newline;
 * then the data. NumPy writes
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * but accepts the same dict without spaces, with the keys in any order, with
 * double quotes. So the reader parses the dict as a dict (a repeated key, an
 * unknown key or a value of the wrong kind is an error: a substring search
 * would let '<f4' in one place vouch for '<f8' in another), checks every
 * product and byte count for overflow, and compares the byte count with the
 * file's size before it allocates anything. */
#include "npy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c reads and writes '<f4' (little-endian) data as native floats"
#endif

/* NumPy's own reader refuses headers over 10000 bytes by default; a float32
 * array's is 128. Version 1.0 cannot say more than 65535. */
#define NPY_MAX_HEADER 65535

int ensure_dir(const char *path)
{
    if (mkdir(path, 0777) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return 0;
        if (errno == EEXIST) errno = ENOTDIR;
    }
    fprintf(stderr, "error: cannot create directory '%s': %s\n", path, strerror(errno));
    return -1;
}

int npy_write_f32(const char *path, const float *data, const size_t *shape, int ndim)
{
    if (ndim < 1 || ndim > NPY_MAX_DIMS) {
        fprintf(stderr, "error: cannot write '%s': %d dimensions (1 to %d supported)\n", path, ndim, NPY_MAX_DIMS);
        return -1;
    }
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        /* NumPy's spelling: (5,) for one dimension, (2, 3) for more */
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%s%zu%s", i ? ", " : "", shape[i], ndim == 1 ? "," : "");
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
    int werr = ferror(f);
    if (fclose(f) || werr || w != count) {
        fprintf(stderr, "error: short write to '%s' (disk full?)\n", path);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- the header */

typedef struct {
    const char *p, *end; /* the header text (not NUL-terminated) */
    char why[256];       /* the problem, when a parse fails */
} hdr_t;

static int fail(hdr_t *h, const char *f, ...) __attribute__((format(printf, 2, 3)));
static int fail(hdr_t *h, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(h->why, sizeof h->why, f, ap);
    va_end(ap);
    return -1;
}

static void skip_ws(hdr_t *h)
{
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r' || *h->p == '\f'))
        h->p++;
}

static int expect(hdr_t *h, char c, const char *what, const char *start)
{
    skip_ws(h);
    if (h->p < h->end && *h->p == c) {
        h->p++;
        return 0;
    }
    if (h->p >= h->end) return fail(h, "bad header: expected %s, found the end of the header", what);
    return fail(h, "bad header: expected %s, found '%c' at offset %ld", what, *h->p, (long)(h->p - start));
}

/* A Python string literal in single or double quotes, without escapes. */
static int parse_str(hdr_t *h, char *out, size_t n, const char *start)
{
    skip_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
        return h->p >= h->end ? fail(h, "bad header: expected a quoted string, found the end of the header")
                              : fail(h, "bad header: expected a quoted string, found '%c' at offset %ld", *h->p,
                                     (long)(h->p - start));
    const char q = *h->p++;
    const char *s = h->p;
    while (h->p < h->end && *h->p != q && *h->p != '\\' && *h->p != '\n') h->p++;
    if (h->p >= h->end || *h->p != q)
        return fail(h, "bad header: the string at offset %ld is not closed", (long)(s - 1 - start));
    const size_t len = (size_t)(h->p - s);
    h->p++;
    if (len + 1 > n) return fail(h, "bad header: a string of %zu characters at offset %ld", len, (long)(s - 1 - start));
    memcpy(out, s, len);
    out[len] = 0;
    return 0;
}

static int is_word_char(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

static int parse_bool(hdr_t *h, int *out)
{
    skip_ws(h);
    const size_t left = (size_t)(h->end - h->p);
    int v = -1;
    size_t len = 0;
    if (left >= 4 && !memcmp(h->p, "True", 4)) v = 1, len = 4;
    else if (left >= 5 && !memcmp(h->p, "False", 5)) v = 0, len = 5;
    if (v < 0 || (len < left && is_word_char(h->p[len])))
        return fail(h, "bad header: 'fortran_order' must be True or False");
    h->p += len;
    *out = v;
    return 0;
}

/* A tuple of non-negative integers: (), (5,), (2, 3), (2, 3,). Dimensions past
 * NPY_MAX_DIMS are counted, not stored. */
static int parse_shape(hdr_t *h, size_t *shape, int *nd)
{
    skip_ws(h);
    if (h->p >= h->end || *h->p != '(') return fail(h, "bad header: 'shape' must be a tuple of integers like (2, 3)");
    h->p++;
    int n = 0, comma_after_last = 0;
    for (;;) {
        skip_ws(h);
        if (h->p < h->end && *h->p == ')') {
            h->p++;
            break;
        }
        if (n > 0 && !comma_after_last) return fail(h, "bad header: 'shape' must be a tuple of integers like (2, 3)");
        if (h->p < h->end && *h->p == '-') return fail(h, "bad header: 'shape' has a negative dimension");
        if (h->p >= h->end || *h->p < '0' || *h->p > '9')
            return fail(h, "bad header: 'shape' must be a tuple of integers like (2, 3)");
        uint64_t v = 0;
        while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
            const unsigned d = (unsigned)(*h->p - '0');
            if (v > (UINT64_MAX - d) / 10) return fail(h, "'shape' has a dimension too large for 64 bits");
            v = v * 10 + d;
            h->p++;
        }
        if (h->p < h->end && is_word_char(*h->p)) /* 2L, 2e3, 0x10 */
            return fail(h, "bad header: 'shape' must be a tuple of integers like (2, 3)");
        if (h->p < h->end && *h->p == '.') return fail(h, "bad header: 'shape' must be a tuple of integers like (2, 3)");
        if (v > SIZE_MAX) return fail(h, "'shape' has a dimension too large for this machine");
        if (n < NPY_MAX_DIMS) shape[n] = (size_t)v;
        if (n < 1000) n++;
        skip_ws(h);
        comma_after_last = h->p < h->end && *h->p == ',';
        if (comma_after_last) h->p++;
    }
    if (n == 1 && !comma_after_last)
        return fail(h, "bad header: 'shape' (%zu) is not a tuple; NumPy writes (%zu,)", shape[0], shape[0]);
    *nd = n;
    return 0;
}

typedef struct {
    char descr[64];
    int fortran;
    size_t shape[NPY_MAX_DIMS];
    int nd;
} npy_header_t;

static int parse_header(hdr_t *h, npy_header_t *out)
{
    const char *start = h->p;
    /* Text only: a NUL or a control byte means the length field or the file is wrong. */
    for (const char *c = h->p; c < h->end; c++) {
        const unsigned char u = (unsigned char)*c;
        if ((u < 0x20 && u != '\n' && u != '\r' && u != '\t' && u != '\f') || u >= 0x7f)
            return fail(h, "bad header: byte 0x%02x at offset %ld is not text", u, (long)(c - start));
    }
    enum { K_DESCR = 1, K_FORTRAN = 2, K_SHAPE = 4 };
    unsigned seen = 0;
    if (expect(h, '{', "'{' (a dict)", start)) return -1;
    for (;;) {
        skip_ws(h);
        if (h->p < h->end && *h->p == '}') {
            h->p++;
            break;
        }
        char key[64];
        if (parse_str(h, key, sizeof key, start)) return -1;
        if (expect(h, ':', "':' after a key", start)) return -1;
        unsigned k = !strcmp(key, "descr") ? K_DESCR : !strcmp(key, "fortran_order") ? K_FORTRAN
                   : !strcmp(key, "shape") ? K_SHAPE : 0;
        if (!k) return fail(h, "bad header: unknown key '%s' (a .npy header has 'descr', 'fortran_order', 'shape')", key);
        if (seen & k) return fail(h, "bad header: the key '%s' twice", key);
        seen |= k;
        int rc = k == K_DESCR ? parse_str(h, out->descr, sizeof out->descr, start)
               : k == K_FORTRAN ? parse_bool(h, &out->fortran)
               : parse_shape(h, out->shape, &out->nd);
        if (rc) {
            if (k == K_DESCR && !strncmp(h->why, "bad header: expected a quoted string", 36))
                return fail(h, "bad header: 'descr' is not a simple type string (a structured dtype?); "
                               "only float32 ('<f4') is read");
            return -1;
        }
        skip_ws(h);
        if (h->p < h->end && *h->p == ',') h->p++;
        else if (h->p >= h->end || *h->p != '}') {
            if (h->p >= h->end) return fail(h, "bad header: the dict is not closed");
            return fail(h, "bad header: expected ',' or '}' after the value of '%s', found '%c' at offset %ld", key,
                        *h->p, (long)(h->p - start));
        }
    }
    skip_ws(h);
    if (h->p != h->end)
        return fail(h, "bad header: text after the closing '}' at offset %ld", (long)(h->p - start));
    if (!(seen & K_DESCR)) return fail(h, "bad header: no 'descr' key");
    if (!(seen & K_FORTRAN)) return fail(h, "bad header: no 'fortran_order' key");
    if (!(seen & K_SHAPE)) return fail(h, "bad header: no 'shape' key");
    return 0;
}

/* ---------------------------------------------------------------- reading */

/* data NULL: the header only (npy_peek_f32). */
static int read_f32(const char *path, int want_ndim, float **data, size_t *shape)
{
    if (data) *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "error: cannot open '%s': %s\n", path, strerror(errno));
        return -1;
    }
    char *text = NULL;
    float *p = NULL;
    hdr_t h;
    h.why[0] = 0;
#define BAD(...) do { snprintf(h.why, sizeof h.why, __VA_ARGS__); goto fail; } while (0)
    struct stat st;
    if (fstat(fileno(f), &st)) BAD("cannot stat: %s", strerror(errno));
    if (!S_ISREG(st.st_mode)) BAD("not a regular file");
    if (want_ndim < 1 || want_ndim > NPY_MAX_DIMS) BAD("internal error: %d dimensions asked for", want_ndim);
    const uint64_t fsize = (uint64_t)st.st_size;
    unsigned char pre[12];
    const size_t got = fread(pre, 1, 10, f);
    if (got < 6 || memcmp(pre, "\x93NUMPY", 6)) {
        if (got == 0) BAD("not a .npy file (it is empty)");
        BAD("not a .npy file (it does not start with \\x93NUMPY)");
    }
    if (got < 10) BAD("truncated: %zu bytes, less than a .npy preamble", got);
    if (pre[6] < 1 || pre[6] > 3 || pre[7] != 0)
        BAD("a .npy file of version %d.%d; this reader takes 1.0, 2.0 and 3.0", pre[6], pre[7]);
    size_t pre_len = 10, hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    if (pre[6] > 1) {
        if (fread(pre + 10, 1, 2, f) != 2) BAD("truncated: the file ends inside the header length");
        pre_len = 12;
        hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    }
    if (hlen > NPY_MAX_HEADER) BAD("a header of %zu bytes (more than %d: not written by NumPy for float32)", hlen, NPY_MAX_HEADER);
    if (fsize < pre_len + hlen)
        BAD("truncated: the header should take %zu bytes, the file has %llu after the preamble", hlen,
            (unsigned long long)(fsize - pre_len));
    text = malloc(hlen + 1);
    if (!text) BAD("out of host memory for the header");
    if (fread(text, 1, hlen, f) != hlen) BAD("truncated inside the header (the file changed while read?)");
    h.p = text;
    h.end = text + hlen;
    npy_header_t hd;
    memset(&hd, 0, sizeof hd);
    if (parse_header(&h, &hd)) goto fail;
    if (strcmp(hd.descr, "<f4"))
        BAD("dtype '%s' is not little-endian float32 ('<f4'): convert with x.astype('<f4')", hd.descr);
    if (hd.fortran) BAD("Fortran order; save a C-ordered array (np.ascontiguousarray(x))");
    if (hd.nd != want_ndim) BAD("%d dimensions, %d expected", hd.nd, want_ndim);
    size_t count = 1;
    for (int i = 0; i < hd.nd; i++) {
        if (hd.shape[i] == 0) BAD("empty: dimension %d is 0", i);
    }
    for (int i = 0; i < hd.nd; i++) {
        if (count > SIZE_MAX / hd.shape[i]) BAD("'shape' is too large: its element count overflows 64 bits");
        count *= hd.shape[i];
    }
    if (count > SIZE_MAX / sizeof(float)) BAD("'shape' is too large: its byte count overflows 64 bits");
    const size_t bytes = count * sizeof(float);
    const uint64_t have = fsize - pre_len - hlen;
    if (have < bytes)
        BAD("truncated: the shape needs %zu bytes of data, the file has %llu", bytes, (unsigned long long)have);
    if (have > bytes)
        BAD("%llu bytes after the data the shape describes (%zu bytes): the header does not match the data",
            (unsigned long long)(have - bytes), bytes);
    if (data) {
        p = malloc(bytes);
        if (!p) BAD("out of host memory (%zu bytes)", bytes);
        if (fread(p, 1, bytes, f) != bytes) BAD("truncated (the file changed while read?)");
    }
#undef BAD
    fclose(f);
    free(text);
    for (int i = 0; i < hd.nd; i++) shape[i] = hd.shape[i];
    if (data) *data = p;
    return 0;
fail:
    fprintf(stderr, "error: '%s': %s\n", path, h.why);
    fclose(f);
    free(text);
    free(p);
    return -1;
}

int npy_read_f32(const char *path, int want_ndim, float **data, size_t *shape)
{
    return read_f32(path, want_ndim, data, shape);
}

int npy_peek_f32(const char *path, int want_ndim, size_t *shape) { return read_f32(path, want_ndim, NULL, shape); }

/* ---------------------------------------------------------------- writing a set of files */

void npy_batch_init(npy_batch_t *b) { memset(b, 0, sizeof *b); }

const char *npy_batch_tmp(npy_batch_t *b, const char *path)
{
    if (b->n == b->cap) {
        const int cap = b->cap ? 2 * b->cap : 16;
        char **f = realloc(b->final, (size_t)cap * sizeof *f), **t = f ? realloc(b->tmp, (size_t)cap * sizeof *t) : NULL;
        if (f) b->final = f;
        if (t) b->tmp = t;
        if (!f || !t) return NULL;
        b->cap = cap;
    }
    const size_t n = strlen(path) + 40;
    char *fin = malloc(n), *tmp = malloc(n);
    if (!fin || !tmp) {
        free(fin);
        free(tmp);
        return NULL;
    }
    snprintf(fin, n, "%s", path);
    /* the same directory (rename is atomic only within a file system), a name no reader takes for a result */
    const char *slash = strrchr(path, '/');
    const int dirlen = slash ? (int)(slash - path + 1) : 0;
    snprintf(tmp, n, "%.*s.%s.tmp%ld", dirlen, path, path + dirlen, (long)getpid());
    b->final[b->n] = fin;
    b->tmp[b->n] = tmp;
    b->n++;
    return tmp;
}

int npy_batch_write_f32(npy_batch_t *b, const char *path, const float *data, const size_t *shape, int ndim)
{
    const char *tmp = npy_batch_tmp(b, path);
    if (!tmp) {
        fprintf(stderr, "error: out of host memory for the name of '%s'\n", path);
        return -1;
    }
    return npy_write_f32(tmp, data, shape, ndim);
}

static void batch_free(npy_batch_t *b)
{
    for (int i = 0; i < b->n; i++) {
        free(b->final[i]);
        free(b->tmp[i]);
    }
    free(b->final);
    free(b->tmp);
    memset(b, 0, sizeof *b);
}

int npy_batch_commit(npy_batch_t *b)
{
    for (int i = 0; i < b->n; i++)
        if (rename(b->tmp[i], b->final[i])) {
            fprintf(stderr, "error: cannot rename '%s' to '%s': %s\n", b->tmp[i], b->final[i], strerror(errno));
            for (int j = i; j < b->n; j++) unlink(b->tmp[j]);
            batch_free(b);
            return -1;
        }
    batch_free(b);
    return 0;
}

void npy_batch_abort(npy_batch_t *b)
{
    for (int i = 0; i < b->n; i++) unlink(b->tmp[i]); /* a file never created: ENOENT, nothing to do */
    batch_free(b);
}
