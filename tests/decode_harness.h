/* Shared by the decode tests (stage 07: test_split_kv, test_split_tc,
 * test_paged): one split decode of an attention problem on the CPU (through
 * a ledger) or the GPU (inputs copied, output and partial states poisoned). */
#ifndef STF_TEST_DECODE_HARNESS_H
#define STF_TEST_DECODE_HARNESS_H

#include "../stages/07_split_kv_decode/split.h"
#include "attn_harness.h"

/* The contiguous decode launchers' signature (split_decode_gpu, split_tc_decode_gpu). */
typedef void decode_gpu_fn(const attn_shape_t *s, const void *q, const void *k, const void *v, void *o,
                           const int *dev_lens, int splits, void *ws);

/* split_decode_cpu of p with `splits` and lens (NULL: the shape's) into o
 * (host, poisoned first), through a fresh ledger returned in *lg when lg != NULL. */
void decode_run_cpu(const attn_problem_t *p, const int *lens, int splits, void *o, ledger_t *lg);

/* run on p's inputs copied to the device, lens (host, or NULL) copied too,
 * with the output and split_partial_bytes(splits) of workspace poisoned
 * (every value read must have been written); o (host) gets the output. */
void decode_run_gpu(const attn_problem_t *p, const int *lens, int splits, void *o, decode_gpu_fn *run);

/* A split-count choice (split_plan, split_tc_plan). */
typedef void decode_plan_fn(const attn_shape_t *s, split_plan_t *p);

/* The benchmark's head layouts at a smaller size (B = 1, Nk keys, d = 128,
 * bf16, scale 1): (Hq, Hkv) = (32, 32), (32, 8), (32, 1), (12, 3), layout h
 * from inputs of stream + h. Each runs on the GPU with the split count
 * plan() chooses, by run, within the tolerance of im's GPU roundings
 * (asserted, printed). With br != NULL each runs again with tune.br =
 * br(shape), and the plan's rows per block (hpb) must equal it. */
void decode_long_gpu(size_t Nk, uint32_t stream, const attn_impl_t *im, decode_plan_fn *plan, decode_gpu_fn *run,
                     size_t (*br)(const attn_shape_t *s));

#endif
