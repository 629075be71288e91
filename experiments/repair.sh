#!/usr/bin/env bash
# REPAIR on Fashion-MNIST (issue 15, SPEC section 6b): for an MLP without BN
# (mlp --widths 512,512,512) and a small VGG-style net without BN
# (experiments/vgg-nobn.arch), train two endpoints (seeds 1, 2), align B to A
# by activation correlation, and evaluate the straight line at t = 0, 1/2, 1
# with --repair none and --repair repair, unaligned and aligned. Writes
# OUT/<model>/*.json and OUT/table.md (line-midpoint test accuracy and loss).
#
#   experiments/repair.sh [OUT]
#
# Environment: MLP_EPOCHS (8), VGG_EPOCHS (6), SAMPLES (training images for
# the alignment statistics, 10000), REPAIR_SAMPLES (training images for the
# REPAIR statistics, 5000), THREADS (1), MC (binary, default build/modeconn).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$root/experiments/results/repair}
MC=${MC:-$root/build/modeconn}
MLP_EPOCHS=${MLP_EPOCHS:-8}; VGG_EPOCHS=${VGG_EPOCHS:-6}
SAMPLES=${SAMPLES:-10000}; REPAIR_SAMPLES=${REPAIR_SAMPLES:-5000}; THREADS=${THREADS:-1}
. "$root/experiments/fit.sh" # fit OUT CMD...: a training, skipped once finished, resumed if interrupted
start=$(date +%s)
run_model() { # name epochs arch-flags...
  local name=$1 epochs=$2; shift 2
  local d="$OUT/$name"; mkdir -p "$d"
  for s in 1 2; do
    fit "$d/m$s.safetensors" "$MC" train "$@" --epochs "$epochs" --seed "$s" --eval-every "$epochs" \
      --threads "$THREADS" --out "$d/m$s.safetensors" >> "$d/train$s.log"
  done
  [ -e "$d/m2_aligned.safetensors" ] || "$MC" align --a "$d/m1.safetensors" --b "$d/m2.safetensors" \
    --samples "$SAMPLES" --threads "$THREADS" --out "$d/m2_aligned.safetensors" > "$d/align.log" 2>&1
  for b in m2 m2_aligned; do
    for r in none repair; do
      "$MC" interp --a "$d/m1.safetensors" --b "$d/$b.safetensors" --points 3 --repair "$r" \
        --bn-samples "$REPAIR_SAMPLES" --threads "$THREADS" --json "$d/interp_${b}_$r.json" > "$d/interp_${b}_$r.log" 2>&1
    done
  done
  echo "$name done ($(( $(date +%s) - start ))s)"
}
run_model mlp "$MLP_EPOCHS" --arch mlp --widths 512,512,512
run_model vgg-nobn "$VGG_EPOCHS" --arch "$root/experiments/vgg-nobn.arch"
/usr/bin/python3 - "$OUT" "$MLP_EPOCHS" "$VGG_EPOCHS" "$REPAIR_SAMPLES" <<'PY'
import json, sys
out, mep, vep, rs = sys.argv[1:]
lines = [f"Fashion-MNIST, endpoints seeds 1 and 2 (mlp 512x3: {mep} epochs, vgg-nobn: {vep} epochs, SGD lr 0.05 "
         f"cosine, crop 2); line midpoint theta(1/2) = (theta_A + theta_B)/2, test set (10,000 images); REPAIR "
         f"statistics on {rs} training images.", "",
         "| model | endpoints A / B acc | B | midpoint acc, no repair | midpoint acc, REPAIR | midpoint loss, no repair | midpoint loss, REPAIR |",
         "|---|---|---|---|---|---|---|"]
for name in ("mlp", "vgg-nobn"):
    for b, label in (("m2", "unaligned"), ("m2_aligned", "aligned")):
        j = {r: json.load(open(f"{out}/{name}/interp_{b}_{r}.json")) for r in ("none", "repair")}
        acc = j["none"]["test_accuracy"]
        m = {r: j[r]["metrics"] for r in j}
        lines.append(f"| {name} | {100*acc[0]:.2f} / {100*acc[-1]:.2f} | {label} | "
                     f"{100*m['none']['midpoint_test_accuracy']:.2f} | {100*m['repair']['midpoint_test_accuracy']:.2f} | "
                     f"{m['none']['midpoint_test_loss']:.4f} | {m['repair']['midpoint_test_loss']:.4f} |")
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
echo "total $(( $(date +%s) - start ))s"
