#!/usr/bin/env bash
# Table-1-style experiment on Fashion-MNIST: for each seed pair, train two
# endpoints, then an unaligned and an aligned Bezier curve, and evaluate
# both curves at POINTS t (BN recomputed at every point). Writes
# OUT/pair<i>/*.json and OUT/table.md (mean +- std over the pairs).
#
#   experiments/table1.sh ARCH PAIRS [OUT]
#
# Environment: EPOCHS (endpoint epochs, 10), CURVE_EPOCHS (20), POINTS (65),
# BN_SAMPLES (training images per BN recompute, 0 = all 60,000), MC (binary).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ARCH=${1:?usage: table1.sh ARCH PAIRS [OUT]}
PAIRS=${2:?usage: table1.sh ARCH PAIRS [OUT]}
OUT=${3:-$root/experiments/results/$ARCH}
MC=${MC:-$root/build/modeconn}
EPOCHS=${EPOCHS:-10}; CURVE_EPOCHS=${CURVE_EPOCHS:-20}; POINTS=${POINTS:-65}; BN_SAMPLES=${BN_SAMPLES:-0}
start=$(date +%s)
for i in $(seq 1 "$PAIRS"); do
  d="$OUT/pair$i"; mkdir -p "$d"
  sa=$((2 * i - 1)); sb=$((2 * i))
  for s in $sa $sb; do
    [ -e "$d/m$s.safetensors" ] || "$MC" train --arch "$ARCH" --epochs "$EPOCHS" --seed "$s" --eval-every "$EPOCHS" \
      --out "$d/m$s.safetensors" > "$d/train$s.log"
    "$MC" eval --model "$d/m$s.safetensors" --bn-recompute --json "$d/eval$s.json" > /dev/null
  done
  for al in none corr; do
    c="$d/curve_$al.safetensors"
    [ -e "$c" ] || "$MC" curve train --a "$d/m$sa.safetensors" --b "$d/m$sb.safetensors" --align "$al" --kind bezier \
      --epochs "$CURVE_EPOCHS" --eval-every 5 --seed "$i" --out "$c" > "$d/curve_$al.log"
    [ -e "$d/curve_$al.json" ] || "$MC" curve eval --curve "$c" --points "$POINTS" --bn-samples "$BN_SAMPLES" \
      --json "$d/curve_$al.json" > "$d/curve_eval_$al.log" 2>&1
  done
  echo "pair $i done ($(( $(date +%s) - start ))s)"
done
/usr/bin/python3 - "$OUT" "$ARCH" "$PAIRS" "$EPOCHS" "$CURVE_EPOCHS" "$POINTS" "$BN_SAMPLES" <<'PY'
import json, statistics as st, sys
out, arch, pairs, ep, cep, pts, bn = sys.argv[1:]
rows = {"endpoints": [], "unaligned avg": [], "unaligned min": [], "aligned avg": [], "aligned min": []}
for i in range(1, int(pairs) + 1):
    d = f"{out}/pair{i}"
    for s in (2 * i - 1, 2 * i):
        rows["endpoints"].append(100 * json.load(open(f"{d}/eval{s}.json"))["accuracy"])
    for al, name in (("none", "unaligned"), ("corr", "aligned")):
        m = json.load(open(f"{d}/curve_{al}.json"))["metrics"]["test_accuracy"]
        rows[f"{name} avg"].append(100 * m["avg"])
        rows[f"{name} min"].append(100 * m["min"])
def f(v):
    return f"{st.mean(v):.2f} ± {st.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"
lines = [f"Fashion-MNIST, {arch}, {pairs} seed pair(s); endpoints {ep} epochs, Bezier curves {cep} epochs; "
         f"test accuracy (%) at {pts} points, BN recomputed on {'all' if bn == '0' else bn} training images per point.", "",
         "| model, method | Avg | Min |", "|---|---|---|",
         f"| {arch} endpoints | {f(rows['endpoints'])} | |",
         f"| {arch} unaligned | {f(rows['unaligned avg'])} | {f(rows['unaligned min'])} |",
         f"| {arch} aligned | {f(rows['aligned avg'])} | {f(rows['aligned min'])} |"]
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
