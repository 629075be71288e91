#!/usr/bin/env bash
# The main job in one command: installs what is missing, builds, and runs
# the whole pipeline on Fashion-MNIST: two TinyTen endpoints (seeds 1, 2),
# correlation alignment, unaligned and aligned Bezier curves, both curves
# and both straight lines evaluated with BN recomputed at every point, the
# loss plane of the aligned curve, and a Markdown report with figures.
#
#   scripts/demo.sh            full run (about 15 minutes on 2 cores)
#   scripts/demo.sh --quick    small subset, few epochs (about 2 minutes)
#   ROBUST=1 scripts/demo.sh   also the robust part (SPEC section 4, about 15
#                              more minutes): PGD-trained endpoints, robust
#                              Bezier curves unaligned and aligned, evaluated
#                              clean and under PGD with BN on PGD examples
#
# Environment: OUT (report directory, default ./report), ARCH (tinyten),
# MODECONN_BACKEND (auto, dnnl or ref), SKIP_INSTALL=1, SKIP_BUILD=1, and the
# size knobs below (EPOCHS, CURVE_EPOCHS, POINTS, GRID, BN_SAMPLES, ...; for
# the robust part R_SUB, R_EPOCHS, R_CURVE_EPOCHS, R_POINTS, R_BN_SAMPLES).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
quick=0
for a in "$@"; do
  case "$a" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
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
  R_SUB=${R_SUB:-"--train-subset 2000 --test-subset 500"}
  R_EPOCHS=${R_EPOCHS:-1}; R_CURVE_EPOCHS=${R_CURVE_EPOCHS:-1}; R_POINTS=${R_POINTS:-5}; R_BN_SAMPLES=${R_BN_SAMPLES:-500}
else
  SUB=${SUB:-""}
  EPOCHS=${EPOCHS:-4}; CURVE_EPOCHS=${CURVE_EPOCHS:-3}; POINTS=${POINTS:-17}; GRID=${GRID:-7}
  BN_SAMPLES=${BN_SAMPLES:-5000}; SAMPLES=${SAMPLES:-10000}
  R_SUB=${R_SUB:-"--train-subset 10000 --test-subset 2000"}
  R_EPOCHS=${R_EPOCHS:-4}; R_CURVE_EPOCHS=${R_CURVE_EPOCHS:-3}; R_POINTS=${R_POINTS:-9}; R_BN_SAMPLES=${R_BN_SAMPLES:-2000}
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
if [ "${ROBUST:-0}" = 1 ]; then
  # PGD with the Fashion-MNIST defaults (eps 0.1, alpha 0.025, 5 steps)
  for s in a b; do
    seed=$([ $s = a ] && echo 1 || echo 2)
    say "robust part: adversarially training endpoint $s (seed $seed, $R_EPOCHS epochs, PGD)"
    "$MC" train --arch "$ARCH" --adv pgd --epochs "$R_EPOCHS" --seed "$seed" --lr 0.1 --schedule robust $R_SUB \
      --eval-every "$R_EPOCHS" --out "$RUN/robust_$s.safetensors"
    "$MC" attack --model "$RUN/robust_$s.safetensors" $R_SUB --json "$RUN/robust_${s}_attack.json"
  done
  for c in unaligned aligned; do
    align=$([ $c = aligned ] && echo corr || echo none)
    say "robust part: robust Bezier curve, $c ($R_CURVE_EPOCHS epochs, PGD against theta(t))"
    "$MC" curve train --adv pgd --a "$RUN/robust_a.safetensors" --b "$RUN/robust_b.safetensors" --align "$align" \
      --samples "$SAMPLES" --kind bezier --epochs "$R_CURVE_EPOCHS" --eval-every "$R_CURVE_EPOCHS" \
      --bn-samples "$R_BN_SAMPLES" $R_SUB --out "$RUN/robust_curve_$c.safetensors"
    say "robust part: evaluating the robust $c curve ($R_POINTS points, clean and PGD, BN on PGD examples)"
    "$MC" curve eval --adv pgd --curve "$RUN/robust_curve_$c.safetensors" --points "$R_POINTS" \
      --bn-samples "$R_BN_SAMPLES" $R_SUB --json "$RUN/robust_curve_$c.json" --csv "$RUN/robust_curve_$c.csv"
  done
fi
}
secs=$(( $(date +%s) - start ))
robust=""
[ "${ROBUST:-0}" = 1 ] && robust="; robust part: endpoints $R_EPOCHS epochs, curves $R_CURVE_EPOCHS epochs, $R_POINTS points, BN on $R_BN_SAMPLES PGD examples, $R_SUB"
settings="endpoints $EPOCHS epochs, curves $CURVE_EPOCHS epochs, $POINTS points per path, ${GRID}x$GRID plane, BN recompute on ${BN_SAMPLES} images, ${SUB:-full data}, $(nproc) threads, ${secs}s$robust"
printf '{"arch": "%s", "data": "fashion-mnist", "settings": "%s"}\n' "$ARCH" "$settings" > "$RUN/info.json"
say "writing the report"
"$MC" report --run "$RUN" --out "$OUT"
echo "done in $(( $(date +%s) - start ))s: report at $OUT/report.md (figures beside it, raw results in $RUN)"
