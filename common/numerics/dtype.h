/* Storage types and host-side conversion.
 *
 * Every stage stores its arrays in one of three types and computes in fp32.
 * fp16 and bf16 are held on the host as uint16_t bit patterns; conversion
 * rounds to nearest, ties to even, exactly as the GPU's __float2half_rn and
 * __float2bfloat16_rn do, so CPU and GPU see bit-identical inputs. fp16 uses
 * C's _Float16 where the compiler has it. */
#ifndef STF_DTYPE_H
#define STF_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DT_F32 = 0, DT_F16 = 1, DT_BF16 = 2 } dtype_t;

size_t dtype_size(dtype_t dt);
const char *dtype_name(dtype_t dt);
/* Returns 0 and sets *dt on "fp32" | "fp16" | "bf16"; -1 otherwise. */
int dtype_parse(const char *s, dtype_t *dt);

/* Unit roundoff u of the storage type (2^-24, 2^-11, 2^-8) and its smallest
 * normal number: below it, relative error is measured against this floor. */
double dtype_unit_roundoff(dtype_t dt);
double dtype_min_normal(dtype_t dt);
/* Largest finite value: 3.40e38, 65504, 3.39e38. */
double dtype_max_finite(dtype_t dt);

uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);
/* The bit-level conversions used where _Float16 is missing. */
uint16_t f32_to_f16_portable(float f);
float f16_to_f32_portable(uint16_t h);
uint16_t f32_to_bf16(float f);
float bf16_to_f32(uint16_t b);

/* Rounds an fp32 value to the storage type and back: the value an array of
 * that type would hold. Identity for fp32. */
float dtype_round(dtype_t dt, float f);
/* The first of x[0..n) that is finite but that the storage type cannot hold
 * (it would be stored as inf): returns 1 and its index in *at, or 0. */
int dtype_first_unfit(const float *x, size_t n, dtype_t dt, size_t *at);

static inline float dtype_get(const void *p, dtype_t dt, size_t i)
{
    switch (dt) {
    case DT_F16: return f16_to_f32(((const uint16_t *)p)[i]);
    case DT_BF16: return bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

static inline void dtype_set(void *p, dtype_t dt, size_t i, float v)
{
    switch (dt) {
    case DT_F16: ((uint16_t *)p)[i] = f32_to_f16(v); break;
    case DT_BF16: ((uint16_t *)p)[i] = f32_to_bf16(v); break;
    default: ((float *)p)[i] = v; break;
    }
}

#ifdef __cplusplus
}
#endif

#endif
