#!/usr/bin/env bash
# The time of one 65-point GoogLeNet curve evaluation (issue 15), end to
# end: two GoogLeNet endpoints (2 epochs on the first TRAIN_SUBSET
# Fashion-MNIST training images, one thread each), an aligned quadratic
# Bezier curve (1 epoch, alignment on 2,000 images), then `curve eval
# --points 65 --bn-samples BN_SAMPLES` on the whole test set with THREADS
# threads, timed by /usr/bin/time.  The endpoints are far from converged:
# this measures time, not accuracy.
#
#   experiments/googlenet_curve65.sh [OUT]
#
# Environment: MC (build/modeconn), TRAIN_SUBSET (5000), BN_SAMPLES (1000),
# THREADS (2, the evaluation; the trainings run on one thread each).
# Every training is skipped once finished (see fit.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$root/experiments/results/googlenet-curve65}
MC=${MC:-$root/build/modeconn}
TRAIN_SUBSET=${TRAIN_SUBSET:-5000}; BN_SAMPLES=${BN_SAMPLES:-1000}; THREADS=${THREADS:-2}
. "$root/experiments/fit.sh"
mkdir -p "$OUT"; cd "$OUT"
com=(--data fashion-mnist --train-subset "$TRAIN_SUBSET")
for s in 1 2; do
  fit m$s.safetensors "$MC" train "${com[@]}" --threads 1 --arch googlenet --epochs 2 --seed $s --eval-every 2 \
    --out m$s.safetensors >> train.log
done
fit curve.safetensors "$MC" curve train "${com[@]}" --threads 1 --a m1.safetensors --b m2.safetensors --kind bezier \
  --align corr --samples 2000 --epochs 1 --eval-every 1 --seed 1 --out curve.safetensors >> train.log
echo "$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; start $(date -u +%FT%TZ)" > curve_eval.log
/usr/bin/time -v "$MC" curve eval --data fashion-mnist --curve curve.safetensors --points 65 \
  --bn-samples "$BN_SAMPLES" --threads "$THREADS" --json curve65.json --csv curve65.csv >> curve_eval.log 2>&1
grep -E '^evaluated|Elapsed|Maximum resident' curve_eval.log
