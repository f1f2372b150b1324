"""torch.softmax on the same GPU, timed as the stage programs time their
kernels (CUDA events, L2 flushed before each run, median), so that stage 03's
figures can be compared with a framework's in the same session.
Shapes: "default", rows x cols = 2^28 at five row lengths (fp32, fp16);
"split", stage 03's few-long-rows shapes (1 x 1048576 fp32, 16 x 256000
fp32 and bf16, and rows = 1 ... 4096 at cols = 262144 fp32); "all", both.
Usage: python3 tools/torch_softmax.py [--csv FILE] [--shapes default|split|all]"""
import argparse
import statistics

import torch

p = argparse.ArgumentParser()
p.add_argument("--csv")
p.add_argument("--iters", type=int, default=20)
p.add_argument("--shapes", choices=("default", "split", "all"), default="all")
a = p.parse_args()

dev = torch.device("cuda")
flush = torch.empty(2 * torch.cuda.get_device_properties(dev).L2_cache_size, dtype=torch.uint8, device=dev)
rows_out = []
shapes = []
if a.shapes in ("default", "all"):
    for dtype, name in ((torch.float32, "fp32"), (torch.float16, "fp16")):
        for cols in (1024, 8192, 16384, 32768, 1048576):
            shapes.append((dtype, name, (1 << 28) // cols, cols))
if a.shapes in ("split", "all"):
    shapes += [(torch.float32, "fp32", 1, 1048576), (torch.float32, "fp32", 16, 256000),
               (torch.bfloat16, "bf16", 16, 256000)]
    shapes += [(torch.float32, "fp32", 1 << k, 262144) for k in range(13)]
for dtype, name, rows, cols in shapes:
    x = (torch.rand(rows, cols, device=dev, dtype=torch.float32) * 2 - 1).to(dtype)
    y = torch.softmax(x, dim=-1)
    ref = torch.softmax(x.double(), dim=-1)
    err = ((y.double() - ref).abs() / ref.abs().clamp_min(torch.finfo(dtype).tiny)).max().item()
    del ref
    times = []
    for i in range(a.iters + 3):
        flush.zero_()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        torch.softmax(x, dim=-1)
        e.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(s.elapsed_time(e))
    ms = statistics.median(times)
    gbps = 2 * x.numel() * x.element_size() / (ms * 1e-3) / 1e9
    rows_out.append((name, rows, cols, ms, gbps, err))
    print(f"torch.softmax {name} {rows:>7} x {cols:<8} {ms:8.4f} ms {gbps:8.1f} GB/s  max rel err {err:.2e}", flush=True)
    del x, y
if a.csv:
    with open(a.csv, "w") as f:
        f.write(f"impl,dtype,rows,cols,time_ms,gbps,max_rel_err,torch,device_name\n")
        for r in rows_out:
            f.write("torch.softmax,%s,%d,%d,%.4f,%.1f,%.2e,%s,%s\n" % (*r, torch.__version__, torch.cuda.get_device_name()))
