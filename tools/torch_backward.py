"""PyTorch's attention backward, for stage 08: timed as the stage program
times its kernels (CUDA events, L2 flushed before each run, median of
--iters), and FlashAttention's accuracy criterion for the gradients the
program saved.

  python3 tools/torch_backward.py --bench [--csv FILE] [--iters 6]
  python3 tools/torch_backward.py --check DIR [DIR ...] [--csv FILE]
  python3 tools/torch_backward.py --one flash|cudnn|math [--what bwd|fwd+bwd] [--shape B H N d causal] [--dtype]

--bench: bf16, B x N = 16384 tokens, H x d = 2048, N in {4096, 16384},
d in {64, 128}, causal or not (the issue's shapes), with SDPA's flash backend
(FlashAttention-2) and cuDNN's: the backward alone (o.backward(dO) on a graph
kept from one forward), TFLOP/s = 2.5 x the forward's 4 B H N^2 d (halved when
causal), FlashAttention's convention; and torch's peak allocated memory
during the backward. Then the FlashAttention paper's shape (GPT-2 medium:
B 64, H 16, N 1024, d 64), forward + backward, flash against the math
backend (the standard attention that keeps P).

--check DIR...: loads q, k, v, do (float32 [B, H, N, d]; K/V may have fewer
heads) and meta.json written by build/bin/08_backward --save-npy, and for
every dq_NAME.npy there (with dk_NAME, dv_NAME) compares each gradient with
an fp32 reference (autograd of the formula on fp32 inputs) against torch's
same-precision error (autograd of the same formula on the stored 16-bit
inputs, every intermediate in that type, as FlashAttention's own tests do):
PASS when max|ours - ref| <= 2 max|torch - ref| for dQ, dK and dV; NaN
fails. For each case it also feeds the criterion a broken copy (one element
moved by 5 x torch's error) that must fail. A file DIR/expect (kernel names,
comma-separated; tools/bwd_accuracy.sh writes it) makes a missing kernel a
failure. Last, the worst ratio per kernel and gradient; --csv FILE: a row per
case, kernel and gradient. Causal masks are bottom-right;
rows that see no key give zero gradients (our convention). Exit 1 on any
failure. Runs on the CPU when there is no GPU.

--one BACKEND: one backward (or forward + backward) after a warm-up, inside
cudaProfilerStart/Stop, for ncu --profile-from-start off (tools/gpu/s08.sh:
the DRAM bytes at the FlashAttention paper's shape, FA2's kernel's profile)."""
import argparse
import datetime
import glob
import json
import os
import statistics
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


from torch_attention import time_ms  # noqa: E402 (the same timing: CUDA events, L2 flushed, median)


torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 reference in fp32, not TF32
torch.backends.cudnn.allow_tf32 = False


def bench(a):
    dev = torch.device("cuda")
    flush = torch.empty(2 * torch.cuda.get_device_properties(dev).L2_cache_size, dtype=torch.uint8, device=dev)
    name, date = torch.cuda.get_device_name(), datetime.date.today().isoformat()
    g = torch.Generator(device=dev)
    g.manual_seed(20261128)
    rows = []

    def one(bname, be, B, H, N, d, causal, what):
        q, k, v = (torch.randn(B, H, N, d, device=dev, dtype=torch.bfloat16, generator=g).requires_grad_()
                   for _ in range(3))
        do = torch.randn(B, H, N, d, device=dev, dtype=torch.bfloat16, generator=g)
        flops = 4.0 * B * H * N * N * d / (2 if causal else 1)
        try:
            with sdpa_kernel(be):
                if what == "bwd":
                    o = F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal))

                    def fn():
                        q.grad = k.grad = v.grad = None
                        o.backward(do, retain_graph=True)
                    fn()
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    fn()
                    torch.cuda.synchronize()
                    peak = torch.cuda.max_memory_allocated() - base
                    fl = 2.5 * flops
                else:
                    def fn():
                        q.grad = k.grad = v.grad = None
                        F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal)).backward(do)
                    fn()
                    peak = 0
                    fl = 3.5 * flops
                ms = time_ms(fn, flush, a.iters, warmup=2)
        except RuntimeError as ex:
            print(f"{bname:6s} {what:7s} B={B:3d} H={H:3d} N={N:5d} d={d:3d} causal={causal}: not run "
                  f"({str(ex).splitlines()[0][:80]})", flush=True)
            return
        finally:
            torch.cuda.empty_cache()
        tf = fl / (ms * 1e-3) / 1e12
        rows.append((bname, what, "bf16", B, H, N, d, causal, ms, tf, peak, name, torch.__version__, date))
        print(f"{bname:6s} {what:7s} B={B:3d} H={H:3d} N={N:5d} d={d:3d} causal={causal}  {ms:8.3f} ms  {tf:7.1f} TFLOP/s"
              f"  peak {peak / 1e6:9.1f} MB", flush=True)

    for d in (64, 128):
        for N in (4096, 16384):
            for causal in (0, 1):
                for bname, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
                    one(bname, be, 16384 // N, 2048 // d, N, d, causal, "bwd")
    for bname, be in (("flash", SDPBackend.FLASH_ATTENTION), ("math", SDPBackend.MATH)):
        one(bname, be, 64, 16, 1024, 64, 0, "fwd+bwd")
    if a.csv:
        with open(a.csv, "w") as f:
            f.write("backend,pass,dtype,batch,heads,seq,dim,causal,time_ms,tflops,peak_bytes,device_name,torch,date\n")
            for r in rows:
                f.write("%s,%s,%s,%d,%d,%d,%d,%d,%.4f,%.1f,%d,%s,%s,%s\n" % r)


def one(a):
    """One run for a profiler: a warm-up, then the run between cudaProfilerStart and Stop (ncu
    --profile-from-start off sees only it). --what bwd: the backward alone (the forward before the
    range); fwd+bwd: both."""
    dev = torch.device("cuda")
    B, H, N, d, causal = a.shape
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}[a.dtype]
    be = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[a.one]
    g = torch.Generator(device=dev)
    g.manual_seed(20261128)
    q, k, v = (torch.randn(B, H, N, d, device=dev, dtype=dt, generator=g).requires_grad_() for _ in range(3))
    do = torch.randn(B, H, N, d, device=dev, dtype=dt, generator=g)
    with sdpa_kernel(be):
        for i in range(2):
            q.grad = k.grad = v.grad = None
            o = F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal))
            torch.cuda.synchronize()
            if i == 1:
                torch.cuda.profiler.start()
            if i == 1 and a.what == "fwd+bwd":  # the forward again, inside the range
                o = F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal))
            o.backward(do)
            torch.cuda.synchronize()
        torch.cuda.profiler.stop()
    print(f"one {a.one} {a.what} {a.dtype} B={B} H={H} N={N} d={d} causal={causal}: ran")


def attention(q, k, v, scale, causal):
    """The formula, in the inputs' type (every intermediate rounded to it),
    K/V heads shared by groups of query heads, bottom-right causal mask,
    rows that see no key giving 0."""
    group = q.shape[1] // k.shape[1]
    kr, vr = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    s = torch.matmul(q, kr.transpose(-1, -2)) * scale
    Nq, Nk = q.shape[2], k.shape[2]
    if causal:
        i = torch.arange(Nq, device=q.device)[:, None]
        j = torch.arange(Nk, device=q.device)[None, :]
        mask = j <= i + (Nk - Nq)
        empty = ~mask.any(dim=1)
        s = s.masked_fill(~mask, float("-inf")).masked_fill(empty[:, None], 0.0)
        p = torch.softmax(s, dim=-1).masked_fill(empty[:, None], 0.0)
    else:
        p = torch.softmax(s, dim=-1)
    return torch.matmul(p, vr)


def grads(q, k, v, do, scale, causal):
    q, k, v = (x.detach().clone().requires_grad_() for x in (q, k, v))
    attention(q, k, v, scale, causal).backward(do)
    return q.grad.float(), k.grad.float(), v.grad.float()


def passes(e_ours, e_torch):
    return e_ours == e_ours and e_torch == e_torch and e_ours <= 2.0 * e_torch


ROWS = []  # (case, impl, gradient, dtype, causal, d, err_ours, err_torch, ratio, pass)


def check(d):
    try:
        meta = json.load(open(os.path.join(d, "meta.json")))
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        q, k, v, do = (torch.from_numpy(np.load(os.path.join(d, n + ".npy"))).to(dev) for n in ("q", "k", "v", "do"))
    except (OSError, ValueError, KeyError) as e:
        print(f"check {d}: cannot load the case ({e})  FAIL")
        return 1
    causal, scale = bool(meta["causal"]), float(meta["scale"])
    if meta.get("dtype") not in ("bf16", "fp16"):
        print(f"check {d}: dtype {meta.get('dtype')}: the criterion compares 16-bit errors; save a bf16 or fp16 case  FAIL")
        return 1
    low = {"bf16": torch.bfloat16, "fp16": torch.float16}[meta["dtype"]]
    ref = grads(q, k, v, do, scale, causal)  # fp32 on the stored values
    tlow = grads(q.to(low), k.to(low), v.to(low), do.to(low), scale, causal)  # the casts are exact
    e_torch = [(t - r).abs().max().item() for t, r in zip(tlow, ref)]
    impls = sorted(os.path.basename(f)[3:-4] for f in glob.glob(os.path.join(d, "dq_*.npy")))
    bad = 0
    # a kernel the case expects (file "expect": names, comma-separated) but that saved nothing fails:
    # a kernel that declined the shape must not pass by saying nothing
    try:
        expect = [x for x in open(os.path.join(d, "expect")).read().strip().split(",") if x]
    except OSError:
        expect = []
    for x in expect:
        if x not in impls:
            print(f"check {d} {x}: expected, but it saved no gradients  FAIL")
            bad += 1
    if not impls:
        print(f"check {d}: no dq_NAME.npy to check  FAIL")
        return 1
    case = os.path.basename(os.path.normpath(d))
    for impl in impls:
        try:
            ours = [torch.from_numpy(np.load(os.path.join(d, f"{g}_{impl}.npy"))).to(dev) for g in ("dq", "dk", "dv")]
        except OSError as e:
            print(f"check {d} {impl}: missing gradient ({e})  FAIL")
            bad += 1
            continue
        for gname, o, r, et in zip(("dQ", "dK", "dV"), ours, ref, e_torch):
            eo = (o - r).abs().max().item()
            ok = passes(eo, et)
            bad += not ok
            # the criterion must reject a copy one element 5 x torch's error off
            b = o.clone()
            b.view(-1)[b.numel() // 2] += 5.0 * et
            eb = (b - r).abs().max().item()
            broken_ok = not passes(eb, et)
            bad += not broken_ok
            ratio = eo / et if et > 0 else float("inf")
            ROWS.append((case, impl, gname, meta["dtype"], int(causal), q.shape[-1], eo, et, ratio, int(ok), int(broken_ok)))
            print(f"check {d} {impl} {gname} ({meta.get('dtype')}, q {tuple(q.shape)}, k {tuple(k.shape)}, "
                  f"causal={int(causal)}): max|ours - ref| = {eo:.3e}, max|torch - ref| = {et:.3e}, ratio "
                  f"{ratio:.2f}  {'PASS' if ok else 'FAIL'}"
                  f"{'' if broken_ok else '  (a broken copy PASSED: the check is broken)'}")
    return 1 if bad else 0


def check_summary(csv):
    """The worst ratio per kernel and gradient over every case, and the broken copies' count."""
    if not ROWS:
        return
    print(f"broken copies: {sum(r[10] for r in ROWS)} of {len(ROWS)} fail the criterion, as they must"
          + ("" if all(r[10] for r in ROWS) else "  FAIL"))
    print("worst ratio max|ours - ref| / max|torch - ref| over the cases (pass: <= 2)")
    print(f"{'kernel':14s} {'grad':4s} {'cases':>5s} {'worst':>6s} {'median':>6s}  worst case")
    for impl in sorted({r[1] for r in ROWS}):
        for g in ("dQ", "dK", "dV"):
            rs = [r for r in ROWS if r[1] == impl and r[2] == g]
            if not rs:
                continue
            w = max(rs, key=lambda r: r[8])
            print(f"{impl:14s} {g:4s} {len(rs):5d} {w[8]:6.2f} {statistics.median(r[8] for r in rs):6.2f}  {w[0]}"
                  f"{'' if all(r[9] for r in rs) else '  FAIL'}")
    if csv:
        with open(csv, "w") as f:
            f.write("case,kernel,grad,dtype,causal,dim,err_ours,err_torch,ratio,pass,broken_fails\n")
            for r in ROWS:
                f.write("%s,%s,%s,%s,%d,%d,%.4e,%.4e,%.3f,%d,%d\n" % r)


p = argparse.ArgumentParser()
p.add_argument("--bench", action="store_true")
p.add_argument("--csv")
p.add_argument("--iters", type=int, default=6)
p.add_argument("--check", nargs="+", metavar="DIR")
p.add_argument("--one", choices=("flash", "cudnn", "math"), help="one run for a profiler (see one())")
p.add_argument("--what", choices=("bwd", "fwd+bwd"), default="bwd")
p.add_argument("--shape", type=int, nargs=5, metavar=("B", "H", "N", "D", "CAUSAL"), default=(4, 16, 4096, 128, 0))
p.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16")
a = p.parse_args()
if a.one:
    one(a)
    sys.exit(0)
if a.check:
    rc = max([check(d) for d in a.check])
    check_summary(a.csv)
    sys.exit(rc)
if a.bench:
    bench(a)
    sys.exit(0)
p.print_help()
sys.exit(2)
