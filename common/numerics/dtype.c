/* Host fp16/bf16 conversion. fp16 goes through C's _Float16 where the
 * compiler has it, and otherwise through a bit-level version written out in
 * portable C11; both round to nearest even, as the GPU's __float2half_rn. */
#include "dtype.h"

#include <float.h>
#include <math.h>
#include <string.h>

size_t dtype_size(dtype_t dt) { return dt == DT_F32 ? 4 : 2; }

const char *dtype_name(dtype_t dt)
{
    switch (dt) {
    case DT_F16: return "fp16";
    case DT_BF16: return "bf16";
    default: return "fp32";
    }
}

int dtype_parse(const char *s, dtype_t *dt)
{
    if (!strcmp(s, "fp32")) { *dt = DT_F32; return 0; }
    if (!strcmp(s, "fp16")) { *dt = DT_F16; return 0; }
    if (!strcmp(s, "bf16")) { *dt = DT_BF16; return 0; }
    return -1;
}

double dtype_unit_roundoff(dtype_t dt)
{
    switch (dt) {
    case DT_F16: return 1.0 / 2048.0;  /* 2^-11: 10 stored mantissa bits */
    case DT_BF16: return 1.0 / 256.0;  /* 2^-8: 7 stored mantissa bits */
    default: return 1.0 / 16777216.0;  /* 2^-24 */
    }
}

double dtype_min_normal(dtype_t dt)
{
    return dt == DT_F16 ? 6.103515625e-05 : (double)FLT_MIN; /* bf16 shares fp32's exponent */
}

double dtype_max_finite(dtype_t dt)
{
    switch (dt) {
    case DT_F16: return 65504.0;
    case DT_BF16: return 3.3895313892515355e38;
    default: return (double)FLT_MAX;
    }
}

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

uint16_t f32_to_f16_portable(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;

    if (exp == 0xffu) /* inf stays inf; NaN stays a quiet NaN */
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0u));

    int e = (int)exp - 127 + 15; /* re-biased exponent */
    if (e >= 31) return (uint16_t)(sign | 0x7c00u); /* too large: inf */
    if (e <= 0) {
        /* Subnormal (or zero) in fp16: shift the full significand right and
         * round to nearest even on the bits shifted out. */
        if (e < -10) return sign; /* below half the smallest subnormal */
        uint32_t sig = man | 0x800000u;
        int shift = 14 - e; /* 14..24 */
        uint32_t half = sig >> shift;
        uint32_t rem = sig & ((1u << shift) - 1u);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half); /* a carry into bit 10 makes it normal: correct */
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* may carry into inf: correct */
    return (uint16_t)(sign | h);
}

float f16_to_f32_portable(uint16_t h)
{
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1fu) return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        /* subnormal: value = man * 2^-24, exact in fp32 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp - 15 + 127) << 23) | (man << 13));
}

/* Where the compiler has C's _Float16 (GCC 12+ and Clang on x86-64 and
 * AArch64), conversion is its job; tests/test_common.c checks the portable
 * version against it, bit for bit. */
uint16_t f32_to_f16(float f)
{
#if defined(__FLT16_MAX__)
    _Float16 h = (_Float16)f;
    uint16_t b;
    memcpy(&b, &h, 2);
    return b;
#else
    return f32_to_f16_portable(f);
#endif
}

float f16_to_f32(uint16_t b)
{
#if defined(__FLT16_MAX__)
    _Float16 h;
    memcpy(&h, &b, 2);
    return (float)h;
#else
    return f16_to_f32_portable(b);
#endif
}

uint16_t f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7f800000u) == 0x7f800000u && (x & 0x7fffffu)) /* NaN: keep it quiet */
        return (uint16_t)((x >> 16) | 0x40u);
    uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)((x + rounding) >> 16);
}

float bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

float dtype_round(dtype_t dt, float f)
{
    switch (dt) {
    case DT_F16: return f16_to_f32(f32_to_f16(f));
    case DT_BF16: return bf16_to_f32(f32_to_bf16(f));
    default: return f;
    }
}

int dtype_first_unfit(const float *x, size_t n, dtype_t dt, size_t *at)
{
    if (dt == DT_F32) return 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i]) && !isfinite(dtype_round(dt, x[i]))) {
            *at = i;
            return 1;
        }
    return 0;
}
