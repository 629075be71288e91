#!/usr/bin/env bash
# The main job in one command: installs what is missing, builds, and runs
# the whole pipeline on Fashion-MNIST: two TinyTen endpoints (seeds 1, 2),
# correlation alignment, unaligned and aligned Bezier curves, both curves
# and both straight lines evaluated with BN recomputed at every point, the
# loss plane of the aligned curve, and a Markdown report with figures.
#
#   scripts/demo.sh            full run (about 15 minutes on 2 cores)
#   scripts/demo.sh --quick    small subset, few epochs (about 2 minutes)
#
# Environment: OUT (report directory, default ./report), ARCH (tinyten),
# MODECONN_BACKEND (auto, dnnl or ref), SKIP_INSTALL=1, SKIP_BUILD=1, and the
# size knobs below (EPOCHS, CURVE_EPOCHS, POINTS, GRID, BN_SAMPLES, ...).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
quick=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown argument '$a' (try --help)" >&2; exit 2 ;;
  esac
done
start=$(date +%s)
[ "${SKIP_INSTALL:-0}" = 1 ] || bash "$root/scripts/install-deps.sh"
BUILD=${BUILD:-$root/build}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cmake -S "$root" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release > /dev/null
  cmake --build "$BUILD" -j"$(nproc)" > /dev/null
fi
MC="$BUILD/modeconn"
ARCH=${ARCH:-tinyten}
OUT=${OUT:-$root/report}
RUN="$OUT/run"
mkdir -p "$RUN"
if [ $quick = 1 ]; then
  SUB=${SUB:-"--train-subset 3000 --test-subset 1000"}
  EPOCHS=${EPOCHS:-2}; CURVE_EPOCHS=${CURVE_EPOCHS:-2}; POINTS=${POINTS:-9}; GRID=${GRID:-5}
  BN_SAMPLES=${BN_SAMPLES:-1000}; SAMPLES=${SAMPLES:-1000}
else
  SUB=${SUB:-""}
  EPOCHS=${EPOCHS:-4}; CURVE_EPOCHS=${CURVE_EPOCHS:-3}; POINTS=${POINTS:-17}; GRID=${GRID:-7}
  BN_SAMPLES=${BN_SAMPLES:-5000}; SAMPLES=${SAMPLES:-10000}
fi
say() { printf '\n== %s (%ds)\n' "$*" "$(( $(date +%s) - start ))"; }
# shellcheck disable=SC2086
{
say "training endpoint A ($ARCH, seed 1, $EPOCHS epochs)"
"$MC" train --arch "$ARCH" --epochs "$EPOCHS" --seed 1 $SUB --eval-every "$EPOCHS" --out "$RUN/a.safetensors"
say "training endpoint B ($ARCH, seed 2)"
"$MC" train --arch "$ARCH" --epochs "$EPOCHS" --seed 2 $SUB --eval-every "$EPOCHS" --out "$RUN/b.safetensors"
"$MC" eval --model "$RUN/a.safetensors" $SUB --json "$RUN/a_eval.json"
"$MC" eval --model "$RUN/b.safetensors" $SUB --json "$RUN/b_eval.json"
say "aligning B to A (activation correlation, $SAMPLES images)"
"$MC" align --a "$RUN/a.safetensors" --b "$RUN/b.safetensors" --out "$RUN/b_aligned.safetensors" \
  --samples "$SAMPLES" $SUB --perm-out "$RUN/align.json"
say "straight lines, unaligned and aligned ($POINTS points each)"
"$MC" interp --a "$RUN/a.safetensors" --b "$RUN/b.safetensors" --points "$POINTS" --bn-samples "$BN_SAMPLES" \
  $SUB --json "$RUN/interp_unaligned.json" --csv "$RUN/interp_unaligned.csv"
"$MC" interp --a "$RUN/a.safetensors" --b "$RUN/b_aligned.safetensors" --points "$POINTS" --bn-samples "$BN_SAMPLES" \
  $SUB --json "$RUN/interp_aligned.json" --csv "$RUN/interp_aligned.csv"
say "Bezier curve between unaligned endpoints ($CURVE_EPOCHS epochs)"
"$MC" curve train --a "$RUN/a.safetensors" --b "$RUN/b.safetensors" --align none --kind bezier \
  --epochs "$CURVE_EPOCHS" --eval-every "$CURVE_EPOCHS" --bn-samples "$BN_SAMPLES" $SUB --out "$RUN/curve_unaligned.safetensors"
say "Bezier curve between aligned endpoints"
"$MC" curve train --a "$RUN/a.safetensors" --b "$RUN/b.safetensors" --align corr --samples "$SAMPLES" --kind bezier \
  --epochs "$CURVE_EPOCHS" --eval-every "$CURVE_EPOCHS" --bn-samples "$BN_SAMPLES" $SUB --out "$RUN/curve_aligned.safetensors"
for c in unaligned aligned; do
  say "evaluating the $c curve ($POINTS points)"
  "$MC" curve eval --curve "$RUN/curve_$c.safetensors" --points "$POINTS" --bn-samples "$BN_SAMPLES" $SUB \
    --json "$RUN/curve_$c.json" --csv "$RUN/curve_$c.csv"
done
say "loss plane of the aligned curve (${GRID}x$GRID)"
"$MC" plane --curve "$RUN/curve_aligned.safetensors" --grid "$GRID" --bn-samples "$BN_SAMPLES" $SUB \
  --json "$RUN/plane_aligned.json"
}
secs=$(( $(date +%s) - start ))
settings="endpoints $EPOCHS epochs, curves $CURVE_EPOCHS epochs, $POINTS points per path, ${GRID}x$GRID plane, BN recompute on ${BN_SAMPLES} images, ${SUB:-full data}, $(nproc) threads, ${secs}s"
printf '{"arch": "%s", "data": "fashion-mnist", "settings": "%s"}\n' "$ARCH" "$settings" > "$RUN/info.json"
say "writing the report"
"$MC" report --run "$RUN" --out "$OUT"
echo "done in $(( $(date +%s) - start ))s: report at $OUT/report.md (figures beside it, raw results in $RUN)"
