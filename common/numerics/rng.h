/* Deterministic, counter-based random numbers.
 *
 * Element i of stream s under seed k is a pure function of (k, s, i), so the
 * GPU can generate a 1 GiB input in place and the CPU can regenerate any row
 * of it to check the result, bit for bit, without copying the input back.
 * The mixer is splitmix64's finaliser (Steele, Lea & Flood, OOPSLA 2014). */
#ifndef STF_RNG_H
#define STF_RNG_H

#include <stdint.h>

#ifdef __CUDACC__
#define STF_HD __host__ __device__ __forceinline__
#else
#define STF_HD static inline
#endif

STF_HD uint64_t rng_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

STF_HD uint64_t rng_u64(uint64_t seed, uint32_t stream, uint64_t i)
{
    return rng_mix64(rng_mix64(seed ^ ((uint64_t)stream << 56) ^ 0x5851f42d4c957f2dull) +
                     (i + 1) * 0x9e3779b97f4a7c15ull);
}

/* Uniform on [-1, 1) with 24 random bits: exactly representable in fp32. */
STF_HD float rng_sym(uint64_t seed, uint32_t stream, uint64_t i)
{
    int32_t k = (int32_t)(rng_u64(seed, stream, i) >> 40); /* 0 .. 2^24-1 */
    return (float)(k - 8388608) * (1.0f / 8388608.0f);
}

/* The generator every stage uses for its inputs: logits = scale * U[-1, 1),
 * computed as one fp32 multiply (so CPU and GPU agree exactly), then stored in
 * the array's type. */
STF_HD float rng_logit(uint64_t seed, uint32_t stream, uint64_t i, float scale)
{
    return scale * rng_sym(seed, stream, i);
}

/* A small sequential generator for tests (random splits, orders, sizes). */
typedef struct { uint64_t state; } rng_t;

STF_HD uint64_t rng_next(rng_t *r)
{
    r->state += 0x9e3779b97f4a7c15ull;
    return rng_mix64(r->state);
}

/* Uniform integer in [0, n), n > 0 (modulo bias is irrelevant at test sizes). */
STF_HD uint64_t rng_below(rng_t *r, uint64_t n) { return rng_next(r) % n; }

#endif
