/* Minimal .npy (NumPy format version 1.0) reading and writing for C-ordered
 * little-endian float32 arrays, so any run's input and output can be checked
 * with NumPy or PyTorch. */
#ifndef STF_NPY_H
#define STF_NPY_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NPY_MAX_DIMS 4

/* Returns 0, or -1 after printing why. */
int npy_write_f32(const char *path, const float *data, const size_t *shape, int ndim);
/* Reads a float32 array with exactly `want_ndim` dimensions (1 to
 * NPY_MAX_DIMS) into a malloc'd buffer and shape[0 .. want_ndim-1]. The header
 * is parsed as the dict it is (keys in any order, with or without spaces,
 * either quote; a repeated or unknown key is an error), every product and
 * byte count is checked for overflow, and the data must fill the rest of the
 * file exactly, before anything is allocated. Returns 0, or -1 with *data =
 * NULL after one line on stderr naming the file and the problem (missing,
 * not .npy, bad header, wrong dtype, Fortran order, wrong rank, empty,
 * too large, truncated, trailing bytes). */
int npy_read_f32(const char *path, int want_ndim, float **data, size_t *shape);
/* The same checks on the header and the file size, without reading the
 * data: the shape, so that a caller can check what the arrays will need
 * before allocating any of it. Returns 0, or -1 after one line on stderr. */
int npy_peek_f32(const char *path, int want_ndim, size_t *shape);

/* A set of output files written under temporary names (".NAME.tmpPID" in the
 * same directory) and renamed together when the run completes: a run that
 * fails part-way (a full disk, a failed check of the last array) leaves none
 * of its files behind, and no reader ever sees a half-written one. */
typedef struct {
    char **final, **tmp;
    int n, cap;
} npy_batch_t;
void npy_batch_init(npy_batch_t *b);
/* Registers path; returns the temporary name to write instead (NULL: out of memory). */
const char *npy_batch_tmp(npy_batch_t *b, const char *path);
/* npy_write_f32 to the temporary name of path. */
int npy_batch_write_f32(npy_batch_t *b, const char *path, const float *data, const size_t *shape, int ndim);
/* Renames every file to its name (0), or removes them all (-1, after a message). */
int npy_batch_commit(npy_batch_t *b);
/* Removes every temporary file. */
void npy_batch_abort(npy_batch_t *b);

/* mkdir -p for one level; 0 when the directory exists afterwards. */
int ensure_dir(const char *path);

#ifdef __cplusplus
}
#endif

#endif
