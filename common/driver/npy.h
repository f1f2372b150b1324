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
/* mkdir -p for one level; 0 when the directory exists afterwards. */
int ensure_dir(const char *path);

#ifdef __cplusplus
}
#endif

#endif
