"""PyTorch's scaled_dot_product_attention on the GPU, timed as the stage
programs time their kernels (CUDA events, L2 flushed before each run by
writing a buffer of twice its size, median of --iters), so that stage 05's
tensor-core ladder can be compared with FlashAttention-2 (the 'flash'
backend), cuDNN and the memory-efficient kernel in the same session.

Shapes: bf16, B x N = 16384 tokens, H x d = 2048, N in {4096, 16384},
d in {64, 128}, causal or not (as tc_dev perf). TFLOP/s = 4 B H N^2 d / time,
halved when causal.

  python3 tools/torch_attention.py [--csv FILE] [--iters 20] [--gemm]
  python3 tools/torch_attention.py --decode [--decode-main] [--csv FILE] [--iters 30]
  python3 tools/torch_attention.py --check DIR [DIR ...] [--impl NAME ...]
  python3 tools/torch_attention.py --check-broken DIR [DIR ...] [--impl NAME ...]

--decode times one query token per sequence against a K/V cache (stage 06-07
shapes: bf16, d = 128, Hq = 32; Hkv = 32, 8, 1 at B = 8, Nk = 32768 and B = 1,
Nk = 131072; and Hkv = 8, B = 1 and 8, Nk = 1k ... 128k) with the flash and
cudnn backends, K/V heads shared natively (enable_gqa=True) where the backend
takes it, and "replicated" (repeat_interleave of K and V, then the backend,
both timed) as a model's repeat_kv does. GB/s = the K/V bytes held (each
byte once, unreplicated) / time.

--profile-decode B,HKV,NK [--backend cudnn|flash] runs one decode call of
that shape (bf16, d = 128, Hq = 32) after a warm-up, inside the NVTX range
"sdpa", for Nsight Compute (`ncu --nvtx --nvtx-include sdpa/`).

--gemm also times one 8192^3 bf16 matmul (cuBLAS), the tensor-core ceiling.
--check-broken DIR... [--impl NAME ...] proves the check: broken copies of
each output (one NaN, one inf, all zeros, one element 5 x torch's error
off) must all fail.
--check DIR... [--impl NAME ...] loads, from each DIR, q.npy, k.npy, v.npy, o.npy (or each
o_NAME.npy) (float32, [B, H, N, d]; K/V may
have fewer heads: GQA) and meta.json ({"causal", "scale", "dtype"}) written by
our programs, computes an fp32 reference (math backend on fp32 inputs) and
torch's same-precision SDPA output, prints max|ours - ref| and
max|torch - ref|, and passes when ours <= 2 x torch (FlashAttention's own
test criterion); exit 1 otherwise. Causal is bottom-right aligned (key j
visible to query i iff j <= i + N_kv - N_q); rows that see no key are zeros
in our convention and are compared as zeros (torch would give NaN there)."""
import argparse
import datetime
import json
import os
import statistics
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
            ("efficient", SDPBackend.EFFICIENT_ATTENTION))


def time_ms(fn, flush, iters, warmup=3):
    times = []
    for i in range(warmup + iters):
        flush.zero_()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(s.elapsed_time(e))
    return statistics.median(times)


def bench(a):
    dev = torch.device("cuda")
    flush = torch.empty(2 * torch.cuda.get_device_properties(dev).L2_cache_size, dtype=torch.uint8, device=dev)
    name, date = torch.cuda.get_device_name(), datetime.date.today().isoformat()
    rows = []
    g = torch.Generator(device=dev)
    g.manual_seed(20261128)
    for d in (int(x) for x in a.dims.split(",")):
        for N in (4096, 16384):
            B, H = 16384 // N, 2048 // d
            q, k, v = (torch.randn(B, H, N, d, device=dev, dtype=torch.bfloat16, generator=g) for _ in range(3))
            for causal in (0, 1):
                flops = 4.0 * B * H * N * N * d / (2 if causal else 1)
                for bname, be in BACKENDS:
                    try:
                        with sdpa_kernel(be):
                            fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal))
                            fn()
                            ms = time_ms(fn, flush, a.iters)
                    except RuntimeError as ex:
                        print(f"{bname:9s} d={d:3d} N={N:5d} causal={causal}: not run ({str(ex).splitlines()[0][:80]})")
                        continue
                    tf = flops / (ms * 1e-3) / 1e12
                    rows.append((bname, "bf16", B, H, H, N, N, d, causal, ms, tf, name, torch.__version__, date))
                    print(f"{bname:9s} d={d:3d} N={N:5d} causal={causal}  {ms:8.3f} ms  {tf:7.1f} TFLOP/s", flush=True)
            del q, k, v
    if a.gemm:
        n = 8192
        x, y = (torch.randn(n, n, device=dev, dtype=torch.bfloat16, generator=g) for _ in range(2))
        ms = time_ms(lambda: x @ y, flush, a.iters)
        print(f"cublas bf16 gemm {n}^3  {ms:8.3f} ms  {2.0 * n ** 3 / (ms * 1e-3) / 1e12:7.1f} TFLOP/s")
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("backend,dtype,batch,heads,kv_heads,seq_q,seq_kv,dim,causal,time_ms,tflops,device_name,torch,date\n")
            for r in rows:
                f.write("%s,%s,%d,%d,%d,%d,%d,%d,%d,%.4f,%.1f,%s,%s,%s\n" % r)


def decode(a):
    dev = torch.device("cuda")
    flush = torch.empty(2 * torch.cuda.get_device_properties(dev).L2_cache_size, dtype=torch.uint8, device=dev)
    name, date = torch.cuda.get_device_name(), datetime.date.today().isoformat()
    g = torch.Generator(device=dev)
    g.manual_seed(20261128)
    d, H = 128, 32
    shapes = [(8, 32, 32768), (8, 8, 32768), (8, 1, 32768), (1, 32, 131072), (1, 8, 131072), (1, 1, 131072)]
    for B in (1, 8) if not a.decode_main else ():
        for n in (1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072):
            if (B, 8, n) not in shapes:
                shapes.append((B, 8, n))
    rows = []
    for B, Hkv, n in shapes:
        q = torch.randn(B, H, 1, d, device=dev, dtype=torch.bfloat16, generator=g)
        k, v = (torch.randn(B, Hkv, n, d, device=dev, dtype=torch.bfloat16, generator=g) for _ in range(2))
        kv_bytes = 2.0 * B * Hkv * n * d * 2
        grp = H // Hkv
        for bname, be in BACKENDS[:2]:
            for method in ("native",) if a.decode_main else ("native", "replicated"):
                if method == "native":
                    fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=grp > 1)
                else:
                    if grp == 1:
                        continue
                    fn = lambda: F.scaled_dot_product_attention(q, k.repeat_interleave(grp, dim=1),
                                                                v.repeat_interleave(grp, dim=1))
                try:
                    with sdpa_kernel(be):
                        fn()
                        ms = time_ms(fn, flush, a.iters)
                except RuntimeError as ex:
                    print(f"{bname:6s} {method:10s} B={B} Hkv={Hkv:2d} Nk={n:6d}: not run ({str(ex).splitlines()[0][:90]})")
                    continue
                gbps = kv_bytes / (ms * 1e-3) / 1e9
                rows.append((bname, method, "bf16", B, H, Hkv, 1, n, d, ms, gbps, name, torch.__version__, date))
                print(f"{bname:6s} {method:10s} B={B} Hkv={Hkv:2d} Nk={n:6d}  {ms:8.4f} ms  {gbps:7.0f} GB/s", flush=True)
        del q, k, v
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("backend,method,dtype,batch,heads,kv_heads,seq_q,seq_kv,dim,time_ms,kv_gbps,device_name,torch,date\n")
            for r in rows:
                f.write("%s,%s,%s,%d,%d,%d,%d,%d,%d,%.5f,%.1f,%s,%s,%s\n" % r)


def profile_decode(a):
    """One timed-call's worth of kernels for a profiler: the plan is built by
    a warm-up call outside the range, so the range holds only the kernels."""
    try:
        B, Hkv, n = (int(x) for x in a.profile_decode.split(","))
        assert B > 0 and Hkv > 0 and n > 0 and 32 % Hkv == 0
    except (ValueError, AssertionError):
        print(f"--profile-decode wants B,HKV,NK (positive, HKV dividing 32), got '{a.profile_decode}'", file=sys.stderr)
        sys.exit(2)
    dev = torch.device("cuda")
    q = torch.randn(B, 32, 1, 128, device=dev, dtype=torch.bfloat16)
    k, v = (torch.randn(B, Hkv, n, 128, device=dev, dtype=torch.bfloat16) for _ in range(2))
    be = dict(BACKENDS)[a.backend]
    with sdpa_kernel(be):
        F.scaled_dot_product_attention(q, k, v, enable_gqa=Hkv < 32)
        torch.cuda.synchronize()
        torch.cuda.nvtx.range_push("sdpa")
        o = F.scaled_dot_product_attention(q, k, v, enable_gqa=Hkv < 32)
        torch.cuda.nvtx.range_pop()
    torch.cuda.synchronize()
    print(f"{a.backend} decode ran: B={B} Hkv={Hkv} Nk={n} -> {tuple(o.shape)} {o.dtype}")


def case_errors(d, impl=None):
    """Loads one saved case; returns (description, o, ref, e_torch): our
    output, the fp32 reference and torch's same-precision max error, on the
    GPU when there is one, else on the CPU (so the check can be tried, with a
    broken output, without a GPU)."""
    meta = json.load(open(os.path.join(d, "meta.json")))
    oname = "o_" + impl if impl else "o"
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    q, k, v, o = (torch.from_numpy(np.load(os.path.join(d, n + ".npy"))).to(dev) for n in ("q", "k", "v", oname))
    causal, scale = bool(meta["causal"]), float(meta["scale"])
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}[meta.get("dtype", "bf16")]
    Nq, Nk = q.shape[2], k.shape[2]
    group = q.shape[1] // k.shape[1]
    mask = None
    if causal:
        i = torch.arange(Nq, device=q.device)[:, None]
        j = torch.arange(Nk, device=q.device)[None, :]
        mask = j <= i + (Nk - Nq)  # bottom-right
    empty = (~mask.any(dim=1)) if mask is not None else torch.zeros(Nq, dtype=torch.bool, device=q.device)
    kr, vr = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    with sdpa_kernel(SDPBackend.MATH):
        ref = F.scaled_dot_product_attention(q, kr, vr, attn_mask=mask, scale=scale)
    # torch's own same-precision result: the inputs are the stored values, so the casts are exact
    tq, tk, tv = q.to(low), kr.to(low), vr.to(low)
    if mask is None or Nq == Nk:
        tout = F.scaled_dot_product_attention(tq, tk, tv, is_causal=causal, scale=scale)
    else:
        tout = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=mask, scale=scale)
    tout = tout.float()
    ref[:, :, empty] = 0.0
    tout[:, :, empty] = 0.0
    desc = f"{d} {oname}: shape q {tuple(q.shape)} k {tuple(k.shape)} causal={causal} {meta.get('dtype')}"
    return desc, o, ref, (tout - ref).abs().max().item()


def verdict(o, ref, e_torch):
    """FlashAttention's criterion: max|o - ref| <= 2 max|torch - ref|; NaN
    anywhere (ours or torch's) fails."""
    e_ours = (o - ref).abs().max().item()  # max propagates NaN
    return e_ours, e_ours == e_ours and e_torch == e_torch and e_ours <= 2.0 * e_torch


def check(d, impl=None):
    try:
        desc, o, ref, e_torch = case_errors(d, impl)
    except (OSError, ValueError, KeyError) as e:
        print(f"check {d} {impl or 'o'}: cannot load the case ({e})  FAIL")
        return 1
    e_ours, ok = verdict(o, ref, e_torch)
    print(f"check {desc}: max|ours - ref| = {e_ours:.3e}, max|torch - ref| = {e_torch:.3e}  {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def check_broken(d, impl=None):
    """The check must fail on broken copies of a passing output: one element
    NaN, one element inf, all zeros, and one element moved by 5 x torch's
    error (since a passing output is within 2 x of it there, the moved element
    is at least 3 x off: just past the criterion). Returns 0 when every
    broken copy fails."""
    desc, o, ref, e_torch = case_errors(d, impl)
    bad = 0
    for name in ("nan", "inf", "zeros", "one element + 5 x torch's error"):
        b = o.clone()
        if name == "zeros":
            b.zero_()
        else:
            b.view(-1)[b.numel() // 2] += {"nan": float("nan"), "inf": float("inf")}.get(name, 5.0 * e_torch)
        e, ok = verdict(b, ref, e_torch)
        print(f"broken ({name}) {desc}: max|ours - ref| = {e:.3e}, 2 x torch = {2 * e_torch:.3e}  "
              f"{'PASSED: the check is broken' if ok else 'fails, as it must'}")
        bad += ok
    return 1 if bad else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--csv")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--gemm", action="store_true")
    p.add_argument("--dims", default="64,128", help="head dims of the timed shapes (default 64,128; H = 2048 / d)")
    p.add_argument("--check", nargs="+", metavar="DIR")
    p.add_argument("--impl", action="append",
                   help="with --check: check o_IMPL.npy (repeatable) instead of o.npy")
    p.add_argument("--check-broken", nargs="+", metavar="DIR",
                   help="feed the check broken copies of each output (NaN, inf, zeros, one element off); exit 1 if any passes")
    p.add_argument("--decode", action="store_true")
    p.add_argument("--decode-main", action="store_true",
                   help="with --decode: only the six shapes of stage 07's table, native K/V heads (a short session)")
    p.add_argument("--profile-decode", metavar="B,HKV,NK",
                   help="one decode call of that shape in the NVTX range 'sdpa', after a warm-up (for ncu)")
    p.add_argument("--backend", choices=("cudnn", "flash"), default="cudnn", help="with --profile-decode")
    a = p.parse_args()
    if a.profile_decode:
        profile_decode(a)
        sys.exit(0)
    if a.check_broken:
        sys.exit(max(check_broken(d, i) for d in a.check_broken for i in (a.impl or [None])))
    if a.check:
        # every directory and implementation is checked (no early exit), one
        # process for all: importing torch costs seconds, a check milliseconds
        sys.exit(max(check(d, i) for d in a.check for i in (a.impl or [None])))
    if a.decode:
        decode(a)
        sys.exit(0)
    bench(a)


if __name__ == "__main__":  # tools/torch_backward.py imports time_ms
    main()
