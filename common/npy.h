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
/* Reads a float32 array with exactly `want_ndim` dimensions into a malloc'd
 * buffer. Returns 0, or -1 after printing why (missing file, wrong dtype,
 * Fortran order, wrong rank, truncated data). */
int npy_read_f32(const char *path, int want_ndim, float **data, size_t *shape);
/* mkdir -p for one level; 0 when the directory exists afterwards. */
int ensure_dir(const char *path);

#ifdef __cplusplus
}
#endif

#endif
