#!/usr/bin/python3
"""The best of each side per workload from a runs file (lines "WORKLOAD SIDE
VALUE", sides modeconn, shipped, tuned) as a Markdown table of speed
ratios modeconn vs PyTorch (> 1: modeconn faster), for bench/pgd.sh and
bench/pam.sh.

  best_table.py RUNS seconds   values are seconds: best = least, ratio = PyTorch / modeconn
  best_table.py RUNS img/s     values are rates: best = most, ratio = modeconn / PyTorch
"""
import sys

runs, unit = sys.argv[1], sys.argv[2]
rate = unit != "seconds"
best = {}
for line in open(runs):
    w, side, v = line.split()
    old = best.setdefault(w, {}).get(side)
    best[w][side] = float(v) if old is None else (max if rate else min)(old, float(v))
print(f"| workload | modeconn {unit} | PyTorch shipped {unit} | PyTorch tuned {unit} | vs shipped | vs tuned |")
print("|---|---|---|---|---|---|")
for w, b in best.items():
    m, s, t = b["modeconn"], b["shipped"], b["tuned"]
    r = (lambda o: m / o) if rate else (lambda o: o / m)
    fmt = "{:.0f}" if rate else "{:.2f}"
    print(f"| {w} | {fmt.format(m)} | {fmt.format(s)} | {fmt.format(t)} | {r(s):.2f}x | {r(t):.2f}x |")
