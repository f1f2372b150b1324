"""Compares two benchmark CSVs of the same kind (softmax or attention, as the
stage programs write them with --csv), row by row: has a change cost speed?

  python3 tools/compare_csv.py OLD.csv NEW.csv [--tol 0.05]

Rows are matched on what defines the run (stage, implementation, device,
dtype and the shape; the n-th repeat of a key matches the n-th); the figure
compared is GB/s for softmax, TFLOP/s for attention (K/V GB/s in decode).
Prints each matched row with new/old, then the median, the range and the rows
outside 1 +- tol. Rows in only one file are counted, not compared. Exit 1 if
nothing matched or a figure is missing; otherwise 0: the verdict on noise is
the reader's, from the spread printed (a GPU run to run varies by a few %)."""
import argparse
import csv
import statistics
import sys

SOFTMAX_KEY = ("stage", "impl", "device", "dtype", "rows", "cols")
ATTN_KEY = ("stage", "impl", "device", "dtype", "batch", "heads", "kv_heads", "seq", "seq_kv", "dim", "causal", "tiles",
            "varlen")


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit(f"compare_csv: {path}: no rows")
    kind = "softmax" if "rows" in rows[0] and "gbps" in rows[0] else "attention" if "tflops" in rows[0] else None
    if kind is None:
        sys.exit(f"compare_csv: {path}: neither a softmax nor an attention CSV (no gbps or tflops column)")
    keycols = SOFTMAX_KEY if kind == "softmax" else ATTN_KEY
    out, seen = {}, {}
    for r in rows:
        # seq_kv and varlen came later: older files lack them (seq_kv = seq, varlen = no)
        # ("-" and "" both say "none": a tiles column of "-" matches a file without one)
        k = tuple(r.get(c) if r.get(c) not in (None, "", "-") else {"seq_kv": r.get("seq"), "varlen": "no"}.get(c, "")
                  for c in keycols)
        n = seen.get(k, 0)
        seen[k] = n + 1
        out[k + (n,)] = r
    return kind, keycols, out


def figure(kind, r):
    if kind == "softmax":
        return "GB/s", r["gbps"]
    if r.get("kv_gbps"):
        return "K/V GB/s", r["kv_gbps"]
    return "TFLOP/s", r["tflops"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--tol", type=float, default=0.05)
    a = p.parse_args()
    k_old, cols, old = load(a.old)
    k_new, _, new = load(a.new)
    if k_old != k_new:
        sys.exit(f"compare_csv: {a.old} is {k_old}, {a.new} is {k_new}")
    ratios, outside, bad = [], [], 0
    for k in (k for k in old if k in new):
        name, fo = figure(k_old, old[k])
        _, fn = figure(k_old, new[k])
        try:
            vo, vn = float(fo), float(fn)
        except ValueError:
            print(f"  {' '.join(k[:-1])}: figure missing (old '{fo}', new '{fn}')")
            bad += 1
            continue
        if not (vo > 0 and vn > 0):
            print(f"  {' '.join(k[:-1])}: figure not positive (old {vo}, new {vn})")
            bad += 1
            continue
        r = vn / vo
        ratios.append(r)
        flag = "" if abs(r - 1) <= a.tol else "  <-- outside 1 +- %g" % a.tol
        if flag:
            outside.append(k)
        print(f"  {' '.join(x for x in k[:-1] if x)}: {name} {vo:g} -> {vn:g}  x{r:.3f}{flag}")
    only_old = sum(1 for k in old if k not in new)
    only_new = sum(1 for k in new if k not in old)
    if not ratios:
        print(f"compare_csv: no rows matched ({len(old)} old, {len(new)} new)")
        return 1
    print(f"{len(ratios)} rows matched ({only_old} only in old, {only_new} only in new): new/old median "
          f"{statistics.median(ratios):.3f}, range {min(ratios):.3f} .. {max(ratios):.3f}, "
          f"{len(outside)} outside 1 +- {a.tol:g}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
