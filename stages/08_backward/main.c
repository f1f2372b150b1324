/* build/bin/08_backward: the backward pass of attention (Q8), the standard
 * one (P stored by the forward) against FlashAttention-2's (P recomputed
 * from Q, K and the forward's log-sum-exp L), on the CPU through the traffic
 * ledger and on the GPU (cuBLAS, CUDA cores, tensor cores), every gradient
 * checked against the fp64 reference (bwd_ref.c). The driver is
 * bwd_driver.c; the implementations are listed in backward_impls.c. */
#include "backward.h"

int main(int argc, char **argv) { return backward_stage_main(argc, argv); }
