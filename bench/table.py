#!/usr/bin/env python3
"""bench/table.py: the summary table of a benchmark run.

  table.py RESULTS.tsv [RATIO ...]

RESULTS.tsv holds one measurement per line, "row<TAB>value" (a row repeats
once per round). Every row is printed in the order it first appears, with
the median, min and max of its values and the number of rounds. Each RATIO
argument, "LABEL|ROW_A|ROW_B" or "LABEL|ROW_A|ROW_B|<=TARGET" (or >=),
prints median(A) / median(B) with the range min(A)/max(B) .. max(A)/min(B)
that the spread of the rounds allows, and whether the medians meet the
target. Rows are matched by their full text. "@FILE" reads RATIO arguments
from FILE, one a line.
"""
import statistics
import sys


def fmt(v):
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def main():
    rows = {}
    order = []
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or "\t" not in line:
                continue
            name, val = line.rsplit("\t", 1)
            if name not in rows:
                rows[name] = []
                order.append(name)
            rows[name].append(float(val))
    width = max([len(n) for n in order] + [20])
    print("| %-*s | %9s | %9s | %9s | %2s |" % (width, "measurement", "median",
                                              "min", "max", "n"))
    print("|%s|%s|%s|%s|%s|" % ("-" * (width + 2), "-" * 11, "-" * 11,
                                "-" * 11, "-" * 4))
    for n in order:
        v = rows[n]
        print("| %-*s | %9s | %9s | %9s | %2d |" % (
            width, n, fmt(statistics.median(v)), fmt(min(v)), fmt(max(v)),
            len(v)))
    ratios = []
    for a in sys.argv[2:]:
        if a.startswith("@"):
            with open(a[1:]) as f:
                ratios += [l.rstrip("\n") for l in f if l.strip()]
        else:
            ratios.append(a)
    if not ratios:
        return
    print()
    lw = max([len(r.split("|", 1)[0]) for r in ratios] + [20])
    print("| %-*s | %7s | %15s | %-12s |" % (lw, "ratio (of medians)", "value",
                                            "range", "target"))
    print("|%s|%s|%s|%s|" % ("-" * (lw + 2), "-" * 9, "-" * 17, "-" * 14))
    for r in ratios:
        f = r.split("|")
        label, a, b = f[0], f[1], f[2]
        op, target = None, ""
        if len(f) > 3:
            op, target = f[3][:2], f[3][2:]
        if a not in rows or b not in rows:
            print("| %-*s | %7s | %15s | %-12s |" % (lw, label, "n/a", "",
                                                    "missing rows"))
            continue
        va, vb = rows[a], rows[b]
        q = statistics.median(va) / statistics.median(vb)
        lo = min(va) / max(vb)
        hi = max(va) / min(vb)
        verdict = ""
        if op:
            ok = q <= float(target) if op == "<=" else q >= float(target)
            verdict = "%s %s %s" % (op, target, "met" if ok else "MISSED")
        print("| %-*s | %7s | %15s | %-12s |" % (
            lw, label, fmt(q), "%s - %s" % (fmt(lo), fmt(hi)), verdict))


if __name__ == "__main__":
    main()
