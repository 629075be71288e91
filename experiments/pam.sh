#!/usr/bin/env bash
# Table-1 rows with PAM on Fashion-MNIST: for each seed pair, train two
# endpoints, then four quadratic Bezier curves -- unaligned, PAM from the
# raw B ("PAM unaligned"), PAM from the correlation-aligned B ("PAM
# aligned"), aligned -- and evaluate each at POINTS t (BN recomputed at
# every point). Writes OUT/pair<i>/*.json and OUT/table.md (mean +- std
# over the pairs) with how many units PAM moved per group.
#
#   experiments/pam.sh ARCH PAIRS [OUT]
#
# Environment: EPOCHS (endpoint epochs, 4), CURVE_EPOCHS (curve and phi-step
# epochs, 3), P_EPOCHS (P-step epochs, 2), SAMPLES_ROUNDING (32),
# SELECT_SAMPLES (5000), POINTS (17), BN_SAMPLES (5000), TRAIN_SUBSET (first N
# training images for training, curves and BN statistics; 0 = all), THREADS
# (threads per command, 0 = all cores), MC (binary).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ARCH=${1:?usage: pam.sh ARCH PAIRS [OUT]}
PAIRS=${2:?usage: pam.sh ARCH PAIRS [OUT]}
OUT=${3:-$root/experiments/results/$ARCH-pam}
MC=${MC:-$root/build/modeconn}
EPOCHS=${EPOCHS:-4}; CURVE_EPOCHS=${CURVE_EPOCHS:-3}; P_EPOCHS=${P_EPOCHS:-2}; POINTS=${POINTS:-17}
BN_SAMPLES=${BN_SAMPLES:-5000}; TRAIN_SUBSET=${TRAIN_SUBSET:-0}; THREADS=${THREADS:-0}; SAMPLES_ROUNDING=${SAMPLES_ROUNDING:-32}; SELECT_SAMPLES=${SELECT_SAMPLES:-5000}
start=$(date +%s)
for i in $(seq 1 "$PAIRS"); do
  d="$OUT/pair$i"; mkdir -p "$d"
  sa=$((2 * i - 1)); sb=$((2 * i))
  for s in $sa $sb; do
    [ -e "$d/m$s.safetensors" ] || "$MC" train --threads "$THREADS" --train-subset "$TRAIN_SUBSET" --arch "$ARCH" --epochs "$EPOCHS" --seed "$s" --eval-every "$EPOCHS" \
      --out "$d/m$s.safetensors" > "$d/train$s.log"
    [ -e "$d/eval$s.json" ] || "$MC" eval --threads "$THREADS" --train-subset "$TRAIN_SUBSET" --model "$d/m$s.safetensors" --bn-recompute --json "$d/eval$s.json" > /dev/null
  done
  for v in none corr pam_none pam_corr; do
    c="$d/curve_$v.safetensors"
    case $v in
      pam_*) extra=(--method pam --align "${v#pam_}" --p-epochs "$P_EPOCHS" --samples-rounding "$SAMPLES_ROUNDING"
                    --select-samples "$SELECT_SAMPLES" --perm-out "$d/perm_$v.json") ;;
      *) extra=(--align "$v") ;;
    esac
    [ -e "$c" ] || "$MC" curve train --threads "$THREADS" --train-subset "$TRAIN_SUBSET" --a "$d/m$sa.safetensors" --b "$d/m$sb.safetensors" --kind bezier "${extra[@]}" \
      --epochs "$CURVE_EPOCHS" --eval-every "$CURVE_EPOCHS" --seed "$i" --out "$c" > "$d/curve_$v.log"
    [ -e "$d/curve_$v.json" ] || "$MC" curve eval --threads "$THREADS" --train-subset "$TRAIN_SUBSET" --curve "$c" --points "$POINTS" --bn-samples "$BN_SAMPLES" \
      --json "$d/curve_$v.json" > "$d/curve_eval_$v.log" 2>&1
    echo "pair $i $v done ($(( $(date +%s) - start ))s)"
  done
done
/usr/bin/python3 - "$OUT" "$ARCH" "$PAIRS" "$EPOCHS" "$CURVE_EPOCHS" "$P_EPOCHS" "$POINTS" "$BN_SAMPLES" \
  "$SAMPLES_ROUNDING" "$SELECT_SAMPLES" "$TRAIN_SUBSET" <<'PY'
import json, statistics as st, sys
out, arch, pairs, ep, cep, pep, pts, bn, sr, sel, sub = sys.argv[1:]
names = (("none", "unaligned"), ("pam_none", "PAM unaligned"), ("pam_corr", "PAM aligned"), ("corr", "aligned"))
rows = {"endpoints": []}
moved = {}
for i in range(1, int(pairs) + 1):
    d = f"{out}/pair{i}"
    for s in (2 * i - 1, 2 * i):
        rows["endpoints"].append(100 * json.load(open(f"{d}/eval{s}.json"))["accuracy"])
    for v, name in names:
        m = json.load(open(f"{d}/curve_{v}.json"))["metrics"]["test_accuracy"]
        rows.setdefault(name + " avg", []).append(100 * m["avg"])
        rows.setdefault(name + " min", []).append(100 * m["min"])
        if v.startswith("pam"):
            p = json.load(open(f"{d}/perm_{v}.json"))
            moved.setdefault(name, []).append(", ".join(f"{g['name']} {g['pam_moved']}/{g['size']}" for g in p["groups"]))
def f(v):
    return f"{st.mean(v):.2f} ± {st.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"
lines = [f"Fashion-MNIST ({'all 60,000' if sub == '0' else 'the first ' + sub} training images), {arch}, {pairs} seed pair(s); endpoints {ep} epochs; Bezier curves and PAM phi-steps {cep} "
         f"epochs; PAM: 1 outer iteration, {pep} P-step epochs, rounding over {sr} BvN samples + LAP + previous, "
         f"selected on the first {sel} training images; test accuracy (%) at {pts} points, BN recomputed on "
         f"{'all' if bn == '0' else bn} training images per point.", "",
         "| model, method | Avg | Min |", "|---|---|---|",
         f"| {arch} endpoints | {f(rows['endpoints'])} | |"]
for v, name in names:
    lines.append(f"| {arch} {name} | {f(rows[name + ' avg'])} | {f(rows[name + ' min'])} |")
lines += ["", "Units PAM moved from its starting permutation, per group (pair 1, 2, ...):", ""]
for name, v in moved.items():
    for i, s in enumerate(v):
        lines.append(f"- {name}, pair {i + 1}: {s}")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
