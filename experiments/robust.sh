#!/usr/bin/env bash
# The robust half of the paper on Fashion-MNIST (SPEC section 4): for each
# seed pair, two adversarially (PGD) trained endpoints, a robust quadratic
# Bezier curve between them unaligned and one aligned (correlation on clean
# inputs), each evaluated at POINTS t clean and under PGD with BN
# recomputed on PGD examples of the training images at every t. Writes
# OUT/pair<i>/*.json and OUT/table.md: clean and robust Avg/Min along the
# curves, the robust loss barrier (mean +- std over pairs), and whether the
# aligned curve's robust loss barrier is the smaller one.
#
#   experiments/robust.sh ARCH PAIRS [OUT]
#
# Environment: EPOCHS (endpoint epochs, 6), CURVE_EPOCHS (4), POINTS (17),
# BN_SAMPLES (2000), TRAIN_SUBSET (first N training images, 10000; 0 = all),
# TEST_SUBSET (first N test images, 0 = all), LR (0.1, schedule robust),
# SAMPLES (alignment images, 10000), THREADS (0 = all cores), MC (binary).
# PGD: the Fashion-MNIST defaults, eps 0.1, alpha 0.025, 5 steps.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ARCH=${1:?usage: robust.sh ARCH PAIRS [OUT]}
PAIRS=${2:?usage: robust.sh ARCH PAIRS [OUT]}
OUT=${3:-$root/experiments/results/$ARCH-robust}
MC=${MC:-$root/build/modeconn}
EPOCHS=${EPOCHS:-6}; CURVE_EPOCHS=${CURVE_EPOCHS:-4}; POINTS=${POINTS:-17}; BN_SAMPLES=${BN_SAMPLES:-2000}
TRAIN_SUBSET=${TRAIN_SUBSET:-10000}; TEST_SUBSET=${TEST_SUBSET:-0}; LR=${LR:-0.1}; SAMPLES=${SAMPLES:-10000}
THREADS=${THREADS:-0}
sub=(--threads "$THREADS" --train-subset "$TRAIN_SUBSET" --test-subset "$TEST_SUBSET")
. "$root/experiments/fit.sh" # fit OUT CMD...: a training, skipped once finished, resumed if interrupted
start=$(date +%s)
for i in $(seq 1 "$PAIRS"); do
  d="$OUT/pair$i"; mkdir -p "$d"
  sa=$((2 * i - 1)); sb=$((2 * i))
  for s in $sa $sb; do
    fit "$d/m$s.safetensors" "$MC" train "${sub[@]}" --arch "$ARCH" --adv pgd --epochs "$EPOCHS" --lr "$LR" \
      --schedule robust --seed "$s" --eval-every "$EPOCHS" --out "$d/m$s.safetensors" >> "$d/train$s.log"
    [ -e "$d/attack$s.json" ] || "$MC" attack "${sub[@]}" --model "$d/m$s.safetensors" --json "$d/attack$s.json" > /dev/null
    echo "pair $i endpoint $s done ($(( $(date +%s) - start ))s)"
  done
  for v in none corr; do
    c="$d/curve_$v.safetensors"
    fit "$c" "$MC" curve train "${sub[@]}" --adv pgd --a "$d/m$sa.safetensors" --b "$d/m$sb.safetensors" \
      --kind bezier --align "$v" --samples "$SAMPLES" --epochs "$CURVE_EPOCHS" --eval-every "$CURVE_EPOCHS" \
      --bn-samples "$BN_SAMPLES" --seed "$i" --out "$c" >> "$d/curve_$v.log"
    [ -e "$d/curve_$v.json" ] || "$MC" curve eval "${sub[@]}" --adv pgd --curve "$c" --points "$POINTS" \
      --bn-samples "$BN_SAMPLES" --json "$d/curve_$v.json" > "$d/curve_eval_$v.log" 2>&1
    echo "pair $i curve $v done ($(( $(date +%s) - start ))s)"
  done
done
secs=$(( $(date +%s) - start ))
/usr/bin/python3 - "$OUT" "$ARCH" "$PAIRS" "$EPOCHS" "$CURVE_EPOCHS" "$POINTS" "$BN_SAMPLES" "$TRAIN_SUBSET" \
  "$TEST_SUBSET" "$secs" "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" <<'PY'
import json, statistics as st, sys
out, arch, pairs, ep, cep, pts, bn, sub, tsub, secs, cpu = sys.argv[1:]
pairs = int(pairs)
def f(v):
    return f"{st.mean(v):.2f} ± {st.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"
def g(v):
    return f"{st.mean(v):.4f} ± {st.stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"
ends = {"clean": [], "robust": []}
rows = {}
holds = []
for i in range(1, pairs + 1):
    d = f"{out}/pair{i}"
    for s in (2 * i - 1, 2 * i):
        a = json.load(open(f"{d}/attack{s}.json"))
        ends["clean"].append(100 * a["clean_accuracy"])
        ends["robust"].append(100 * a["robust_accuracy"])
    barrier = {}
    for v in ("none", "corr"):
        m = json.load(open(f"{d}/curve_{v}.json"))["metrics"]
        r = rows.setdefault(v, {k: [] for k in ("ca", "cm", "ra", "rm", "rlb", "rab", "better")})
        r["ca"].append(100 * m["test_accuracy"]["avg"]); r["cm"].append(100 * m["test_accuracy"]["min"])
        r["ra"].append(100 * m["robust_accuracy"]["avg"]); r["rm"].append(100 * m["robust_accuracy"]["min"])
        r["rlb"].append(m["robust_loss_barrier"]); r["rab"].append(100 * m["robust_accuracy_barrier"])
        r["better"].append(m["points_more_robust_and_accurate"])
        barrier[v] = m["robust_loss_barrier"]
    holds.append(barrier["corr"] < barrier["none"])
train = "all 60,000" if sub == "0" else f"the first {sub}"
test = "all 10,000" if tsub == "0" else f"the first {tsub}"
lines = [f"Fashion-MNIST ({train} training images, {test} test images), {arch}, {pairs} seed pair(s); PGD L-inf "
         f"eps 0.1, alpha 0.025, 5 steps, random start; endpoints adversarially trained {ep} epochs (lr 0.1, "
         f"schedule robust); robust Bezier curves {cep} epochs; {pts} points per curve, BN recomputed at every t on "
         f"PGD examples of {bn} training images; {secs} s on {cpu}.", "",
         "| model, method | clean Avg | clean Min | PGD Avg | PGD Min | robust loss barrier | robust acc. barrier (pp) | points more robust and accurate than both endpoints |",
         "|---|---|---|---|---|---|---|---|",
         f"| {arch} robust endpoints | {f(ends['clean'])} | | {f(ends['robust'])} | | | | |"]
for v, name in (("none", "unaligned"), ("corr", "aligned")):
    r = rows[v]
    lines.append(f"| {arch} robust curve, {name} | {f(r['ca'])} | {f(r['cm'])} | {f(r['ra'])} | {f(r['rm'])} | "
                 f"{g(r['rlb'])} | {f(r['rab'])} | {', '.join(str(b) for b in r['better'])} of {pts} |")
lines += ["", f"Aligned robust loss barrier below the unaligned one in {sum(holds)} of {pairs} pair(s) "
          f"(the paper's claim)."]
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
