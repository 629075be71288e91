#!/usr/bin/env bash
# Table 1 of the paper for one architecture: for each seed pair, train two
# endpoints, then four quadratic Bezier curves -- unaligned, PAM from the
# raw B ("PAM unaligned"), PAM from the correlation-aligned B ("PAM
# aligned"), aligned -- evaluate each at POINTS t (BN recomputed at every
# point), and the straight line's midpoint with --repair none / reset /
# repair, unaligned and aligned. Writes OUT/pair<i>/*.json and OUT/table.md:
# the paper's layout (Avg/Min over the curve, mean +- std over the pairs),
# how many units PAM moved per group, and the line-midpoint table.
#
#   experiments/table1.sh ARCH PAIRS [OUT]
#
# Environment (defaults are the Fashion-MNIST preset at the paper's scale):
#   ARCH_FLAGS      extra model flags for train, e.g. "--width 0.5" (none)
#   DATA            dataset (fashion-mnist; cifar10:DIR, cifar100:DIR for the
#                   paper's own CIFAR binary files)
#   EPOCHS          endpoint epochs (10)
#   CURVE_EPOCHS    Bezier-curve and PAM phi-step epochs (20)
#   P_EPOCHS        PAM P-step epochs (20, the official default)
#   METHODS         curve rows to run, of: none pam_none pam_corr corr
#                   (all four)
#   POINTS          points per curve (65)
#   BN_SAMPLES      training images per BN recompute / REPAIR pass (0 = all)
#   SAMPLES         training images for the alignment statistics (10000)
#   SAMPLES_ROUNDING, SELECT_SAMPLES   PAM rounding: BvN samples (32) and the
#                   training images of the selection loss (5000)
#   TRAIN_SUBSET, TEST_SUBSET          first N images (0 = all)
#   THREADS         threads per command (0 = all cores)
#   MC              the binary (build/modeconn)
#   PAIR_FROM       first pair to run (1); the table still covers pairs
#                   1..PAIRS, so PAIR_FROM=3 adds a third pair to a
#                   directory whose pairs 1-2 kept only their JSON results
# Every step is skipped when its output exists (a training: when it
# finished, see fit), so an interrupted run continues where it stopped.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ARCH=${1:?usage: table1.sh ARCH PAIRS [OUT]}
PAIRS=${2:?usage: table1.sh ARCH PAIRS [OUT]}
OUT=${3:-$root/experiments/results/$(basename "$ARCH" .arch)-table1}
MC=${MC:-$root/build/modeconn}
ARCH_FLAGS=${ARCH_FLAGS:-}; DATA=${DATA:-fashion-mnist}; EPOCHS=${EPOCHS:-10}; CURVE_EPOCHS=${CURVE_EPOCHS:-20}; P_EPOCHS=${P_EPOCHS:-20}
METHODS=${METHODS:-none pam_none pam_corr corr}; POINTS=${POINTS:-65}; BN_SAMPLES=${BN_SAMPLES:-0}
SAMPLES=${SAMPLES:-10000}; SAMPLES_ROUNDING=${SAMPLES_ROUNDING:-32}; SELECT_SAMPLES=${SELECT_SAMPLES:-5000}
TRAIN_SUBSET=${TRAIN_SUBSET:-0}; TEST_SUBSET=${TEST_SUBSET:-0}; THREADS=${THREADS:-0}; PAIR_FROM=${PAIR_FROM:-1}
com=(--data "$DATA" --train-subset "$TRAIN_SUBSET" --test-subset "$TEST_SUBSET" --threads "$THREADS")
. "$root/experiments/fit.sh" # fit OUT CMD...: a training, skipped once finished, resumed if interrupted
start=$(date +%s)
step() { echo "pair $i: $1 ($(( $(date +%s) - start ))s)"; }
for i in $(seq "$PAIR_FROM" "$PAIRS"); do
  d="$OUT/pair$i"; mkdir -p "$d"
  sa=$((2 * i - 1)); sb=$((2 * i))
  for s in $sa $sb; do
    fit "$d/m$s.safetensors" "$MC" train "${com[@]}" --arch "$ARCH" $ARCH_FLAGS --epochs "$EPOCHS" --seed "$s" \
      --eval-every "$EPOCHS" --out "$d/m$s.safetensors" >> "$d/train$s.log"
    [ -e "$d/eval$s.json" ] || "$MC" eval "${com[@]}" --model "$d/m$s.safetensors" --bn-recompute \
      --json "$d/eval$s.json" > /dev/null
    step "endpoint seed $s"
  done
  A=$d/m$sa.safetensors B=$d/m$sb.safetensors
  for v in $METHODS; do
    c="$d/curve_$v.safetensors"
    case $v in
      pam_none|pam_corr) extra=(--method pam --align "${v#pam_}" --p-epochs "$P_EPOCHS" --samples-rounding
                                "$SAMPLES_ROUNDING" --select-samples "$SELECT_SAMPLES" --perm-out "$d/perm_$v.json") ;;
      none|corr) extra=(--align "$v") ;;
      *) echo "table1.sh: METHODS: unknown row '$v' (expected none pam_none pam_corr corr)" >&2; exit 2 ;;
    esac
    fit "$c" "$MC" curve train "${com[@]}" --a "$A" --b "$B" --kind bezier "${extra[@]}" --samples "$SAMPLES" \
      --epochs "$CURVE_EPOCHS" --eval-every "$CURVE_EPOCHS" --seed "$i" --out "$c" >> "$d/curve_$v.log"
    [ -e "$d/curve_$v.json" ] || "$MC" curve eval "${com[@]}" --curve "$c" --points "$POINTS" \
      --bn-samples "$BN_SAMPLES" --json "$d/curve_$v.json" > "$d/curve_eval_$v.log" 2>&1
    step "curve $v"
  done
  # the straight line's midpoint, raw and aligned B, without and with BN reset / REPAIR
  [ -e "$d/m${sb}_aligned.safetensors" ] || "$MC" align "${com[@]}" --a "$A" --b "$B" --samples "$SAMPLES" \
    --out "$d/m${sb}_aligned.safetensors" > "$d/align.log" 2>&1
  for b in raw aligned; do
    [ $b = raw ] && bf=$B || bf=$d/m${sb}_aligned.safetensors
    for r in none reset repair; do
      [ -e "$d/line_${b}_$r.json" ] || "$MC" interp "${com[@]}" --a "$A" --b "$bf" --points 3 --repair "$r" \
        --bn-samples "$BN_SAMPLES" --json "$d/line_${b}_$r.json" > "$d/line_${b}_$r.log" 2>&1
    done
  done
  step "line midpoints"
done
secs=$(( $(date +%s) - start ))
/usr/bin/python3 - "$OUT" "$ARCH" "$PAIRS" "$METHODS" "$secs" "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
  "ARCH_FLAGS=${ARCH_FLAGS:-none} DATA=$DATA EPOCHS=$EPOCHS CURVE_EPOCHS=$CURVE_EPOCHS P_EPOCHS=$P_EPOCHS POINTS=$POINTS BN_SAMPLES=$BN_SAMPLES" \
  "SAMPLES=$SAMPLES SAMPLES_ROUNDING=$SAMPLES_ROUNDING SELECT_SAMPLES=$SELECT_SAMPLES TRAIN_SUBSET=$TRAIN_SUBSET" \
  "TEST_SUBSET=$TEST_SUBSET THREADS=$THREADS" <<'PY'
import json, os, statistics as st, sys
out, arch, pairs, methods, secs, cpu, *env = sys.argv[1:]
arch = os.path.basename(arch)
pairs, methods = int(pairs), methods.split()
names = {"none": "unaligned", "pam_none": "PAM unaligned", "pam_corr": "PAM aligned", "corr": "aligned"}
order = [v for v in ("none", "pam_none", "pam_corr", "corr") if v in methods]
def f(v):
    return f"{st.mean(v):.2f} ± {st.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}"
def load(p):
    return json.load(open(p))
ends, rows, moved, mid = [], {}, {}, {}
for i in range(1, pairs + 1):
    d = f"{out}/pair{i}"
    for s in (2 * i - 1, 2 * i):
        ends.append(100 * load(f"{d}/eval{s}.json")["accuracy"])
    for v in order:
        m = load(f"{d}/curve_{v}.json")["metrics"]["test_accuracy"]
        rows.setdefault(v, ([], []))[0].append(100 * m["avg"])
        rows[v][1].append(100 * m["min"])
        if v.startswith("pam"):
            p = load(f"{d}/perm_{v}.json")
            moved.setdefault(v, []).append(", ".join(f"{g['name']} {g['pam_moved']}/{g['size']}" for g in p["groups"]))
    for b in ("raw", "aligned"):
        for r in ("none", "reset", "repair"):
            m = load(f"{d}/line_{b}_{r}.json")["metrics"]
            mid.setdefault((b, r), []).append(100 * m["midpoint_test_accuracy"])
lines = [f"Table 1 layout: {arch}, {pairs} seed pair(s) (seeds 1..{2 * pairs}); test accuracy (%) along quadratic "
         f"Bezier curves, Avg = arc-length-weighted mean and Min over the points, BN recomputed at every point; "
         f"mean ± std over the pairs. This invocation: {secs} s on {cpu} (steps whose outputs existed "
         f"were skipped).", "", "Settings: " + " ".join(env) + ".", "",
         "| model, method | Avg | Min |", "|---|---|---|", f"| {arch} endpoints | {f(ends)} | |"]
for v in order:
    lines.append(f"| {arch} {names[v]} | {f(rows[v][0])} | {f(rows[v][1])} |")
if moved:
    lines += ["", "Units PAM moved from its starting permutation, per group:", ""]
    for v, per in moved.items():
        lines += [f"- {names[v]}, pair {i + 1}: {s}" for i, s in enumerate(per)]
lines += ["", "Straight line, test accuracy (%) at t = 1/2: `none` = running statistics interpolated, "
          "`reset` = BN recomputed, `repair` = REPAIR (equal to `reset` when every conv/linear output "
          "feeds a BN: no REPAIR layers).", "",
          "| B | none | reset | repair |", "|---|---|---|---|"]
for b, label in (("raw", "unaligned"), ("aligned", "aligned")):
    lines.append(f"| {label} | " + " | ".join(f(mid[(b, r)]) for r in ("none", "reset", "repair")) + " |")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
