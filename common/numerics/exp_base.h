/* The "-inf maximum" guard, written once for every stage (CPU and GPU).
 *
 * Softmax takes its exponents against the row maximum m: e^{x - m}. While a
 * running maximum has seen no finite element (an empty set, or a masked
 * prefix of -inf), m = -inf and e^{x - m} would be e^{-inf - (-inf)} = NaN.
 * Taking the exponents against 0 instead in that case makes every masked
 * element add exactly e^{-inf} = 0, and a merge with an empty state the
 * identity. A row of all -inf still ends with a sum of 0 and gives 0/0 = NaN,
 * the convention of every stage and of torch.softmax. */
#ifndef STF_EXP_BASE_H
#define STF_EXP_BASE_H

#include <math.h>

/* log2(e), written once: the kernels compute e^x as 2^(x log2 e), one
 * MUFU.EX2 instruction, and fold log2(e) into the softmax scale. */
#define STF_LOG2E 1.4426950408889634
#define STF_LOG2E_F 1.4426950408889634f

#ifdef __CUDACC__
#define STF_HD __host__ __device__ __forceinline__
#else
#define STF_HD static inline
#endif

/* The exponent base for a running maximum m: m itself, or 0 while m = -inf. */
STF_HD float exp_base(float m) { return m == -INFINITY ? 0.0f : m; }

#endif
