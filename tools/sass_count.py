"""Counts the SASS instructions of one kernel in address ranges, for reading
a profiler's instruction counts against the code (note 07b: the paged
loader's extra instructions per tile).

  cuobjdump -sass OBJ.o | python3 tools/sass_count.py FUNC [FROM-TO ...] [--skips]

FUNC: a substring of the mangled name (the first function whose name holds
it). FROM-TO: hexadecimal addresses, both included. Each range prints its
instruction count and its opcodes by frequency; with --skips, every forward
branch in each range is listed with the number of instructions it jumps
over (a conditional block's size). No range: the whole function. cuobjdump comes
with the CUDA Toolkit (and on PyPI as nvidia-cuda-cuobjdump, with
nvidia-cuda-nvdisasm beside it)."""
import collections
import re
import sys

INS = re.compile(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")


def parse(lines, func):
    out, on, found = [], False, False
    for line in lines:
        if "Function :" in line:
            if found and on:
                break
            on = func in line
            found = found or on
            continue
        m = INS.match(line) if on else None
        if m:
            out.append((int(m.group(1), 16), m.group(2)))
    return out if found else None


def opcode(ins):
    if ins.startswith("@"):
        ins = ins.split(None, 1)[1]
    return ins.split()[0].split(".")[0]


def span(arg):
    try:
        a, b = (int(x, 16) for x in arg.split("-"))
        assert a <= b
        return a, b
    except (ValueError, AssertionError):
        sys.exit(f"sass_count: a range is FROM-TO in hexadecimal, FROM <= TO (got '{arg}')")


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    func, rest = args[0], args[1:]
    code = parse(sys.stdin, func)
    if not code:
        print(f"sass_count: no function whose name holds '{func}' in the input (cuobjdump -sass OBJ | ...)",
              file=sys.stderr)
        sys.exit(2)
    skips = "--skips" in rest
    ranges = [span(r) for r in rest if r != "--skips"] or [(code[0][0], code[-1][0])]
    for a, b in ranges:
        sel = [(x, i) for x, i in code if a <= x <= b]
        ops = collections.Counter(opcode(i) for _, i in sel)
        print(f"{a:04x}-{b:04x}: {len(sel)} instructions; " + ", ".join(f"{k} {v}" for k, v in ops.most_common()))
        if skips:
            addr = [x for x, _ in code]
            for x, i in sel:
                m = re.search(r"\bBRA\s+(?:`\()?0x([0-9a-f]+)", i)
                if m and int(m.group(1), 16) > x:
                    t = int(m.group(1), 16)
                    pred = i.split()[0] + " " if i.startswith("@") else ""
                    print(f"  {x:04x} {pred}BRA {t:04x}: skips {sum(1 for y in addr if x < y < t)}")


if __name__ == "__main__":
    main()
