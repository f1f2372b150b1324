/* Stage 04, the merge of two partial attention states. What changes from
 * stage 03: md_merge (stages/03_online_softmax/md.h) merged (max, sum) pairs; this
 * merge carries the output vector o along. Stage 05 (tiles of keys) and the
 * later stages reuse it.
 *
 * Two states over disjoint key sets, (m1, l1, o1) and (m2, l2, o2), each taken
 * against its own maximum, become the state of the union by bringing both to
 * the common maximum M = max(m1, m2):
 *     l = l1 e^{m1 - M} + l2 e^{m2 - M},   o = o1 e^{m1 - M} + o2 e^{m2 - M}
 * In exact arithmetic this is exactly sum_j e^{s_j - M} (and times v_j) over
 * the union, whatever the two sets were: the merge is associative and
 * commutative. That is why the keys can be cut into blocks handled by
 * different warps or thread blocks, in any order, and combined at the end:
 * the whole parallel structure of FlashAttention rests on this one function.
 * The one-pass recurrence (one_pass_cpu.c) is the special case where the
 * second state is a single key: (s, 1, v).
 *
 * It does not save arithmetic: every (query, key) pair still costs its dot
 * product, its exponential and its d multiply-adds into o (4 N^2 d FLOPs per
 * head, as standard attention); the rescalings add a little. What it saves is
 * memory: no N x N array.
 *
 * The formula is written once, in merge.h (attn_merge_ml, __host__
 * __device__): this file applies it to a whole o vector; stage 06's decode
 * kernel and stage 07's combine apply it to the columns each thread holds.
 *
 * Memory traffic: none (registers only). An empty state (m = -inf) merges as
 * the identity: the exponents are taken against 0 while M = -inf (exp_base,
 * common/numerics/exp_base.h), as in stage 03, so that e^{-inf - (-inf)} = NaN never appears.
 *
 * Run: through build/bin/test_attention (test_merge_*). */
#include <math.h>

#include "attention.h"
#include "merge.h"

void attn_state_init(attn_state_t *st, float *o, size_t d)
{
    st->m = -INFINITY;
    st->l = 0.0f;
    st->o = o;
    for (size_t c = 0; c < d; c++) o[c] = 0.0f;
}

void attn_merge(attn_state_t *a, const attn_state_t *b, size_t d)
{
    float fa, fb;
    attn_merge_ml(&a->m, &a->l, b->m, b->l, &fa, &fb); /* merge.h: the formula, once */
    for (size_t c = 0; c < d; c++) a->o[c] = a->o[c] * fa + b->o[c] * fb;
}

/* l = 0 only for the empty state (no visible key, or every logit -inf):
 * the output is 0 there, FlashAttention's convention, not 0/0. */
void attn_state_finish(const attn_state_t *st, size_t d, float *out)
{
    for (size_t c = 0; c < d; c++) out[c] = st->l == 0.0f ? 0.0f : st->o[c] / st->l;
}
