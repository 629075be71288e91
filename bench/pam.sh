#!/bin/sh
# PAM (issue 17) against PyTorch, as speed ratios: one P-step epoch and one
# phi-step epoch (= quadratic Bezier curve training) of tinyten over the
# first N Fashion-MNIST training images, batch 128.
#   modeconn          `modeconn curve train --method pam --align none
#                     --p-epochs 1 --phi-epochs 1 --samples-rounding 0`:
#                     its `pam P-step epoch` and `curve epoch` lines
#   PyTorch shipped   bench/torch_side.py pstep / curvetrain (dense P_g per
#                     group, functional_call, autograd; the official code's
#                     loop), LD_PRELOAD and OPENBLAS_NUM_THREADS unset
#   PyTorch tuned     the same with tcmalloc preloaded, OPENBLAS_NUM_THREADS=1
# Each repetition runs the three one after the other; the best of REPS is
# reported per side.  Timings are never asserted.
#
#   bench/pam.sh [REPS] [N] [THREADS]     (defaults 2 12800 2)
#
# Environment: MODECONN (default build/modeconn), BENCH_DIR (scratch; the
# endpoints, 1 epoch on 6,400 images, seeds 1 and 2, are kept there).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
mc=${MODECONN:-$root/build/modeconn}
if [ ! -x "$mc" ]; then
  echo "bench: $mc not found or not executable; build first (cmake -S . -B build && cmake --build build -j2) or set MODECONN" >&2
  exit 1
fi
reps=${1:-2} n=${2:-12800} thr=${3:-2}
py=/usr/bin/python3
tcm=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
work=${BENCH_DIR:-$(mktemp -d /tmp/mc_pam_bench.XXXXXX)}
mkdir -p "$work"
export PYTHONDONTWRITEBYTECODE=1
echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); threads $thr; $n images"
for s in 1 2; do
  [ -f "$work/tt-$s.safetensors" ] || "$mc" train --arch tinyten --epochs 1 --seed $s --train-subset 6400 \
    --test-subset 1000 --threads "$thr" --out "$work/tt-$s.safetensors" >/dev/null
done
"$mc" info --arch tinyten >"$work/info.txt"
A=$work/tt-1.safetensors B=$work/tt-2.safetensors
: >"$work/runs.txt"
for r in $(seq "$reps"); do
  rm -f "$work/pam.safetensors"*
  "$mc" curve train --a "$A" --b "$B" --kind bezier --method pam --align none --train-subset "$n" --test-subset 1 \
    --p-epochs 1 --phi-epochs 1 --samples-rounding 0 --eval-every 1000 --seed 1 --threads "$thr" \
    --out "$work/pam.safetensors" >"$work/mc.log" 2>&1
  echo "pstep modeconn $(sed -n 's/^pam P-step epoch .* \([0-9]*\) img\/s$/\1/p' "$work/mc.log" | head -1)" >>"$work/runs.txt"
  echo "phistep modeconn $(sed -n 's/^curve epoch .* \([0-9]*\) img\/s$/\1/p' "$work/mc.log" | head -1)" >>"$work/runs.txt"
  for side in shipped tuned; do
    if [ $side = tuned ]; then set -- env LD_PRELOAD=$tcm OPENBLAS_NUM_THREADS=1 $py; else set -- env -u LD_PRELOAD -u OPENBLAS_NUM_THREADS $py; fi
    "$@" "$here/torch_side.py" --threads "$thr" pstep --a "$A" --b "$B" --info "$work/info.txt" --n "$n" >"$work/t.json"
    echo "pstep $side $($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["images_per_second"])' "$work/t.json")" >>"$work/runs.txt"
    "$@" "$here/torch_side.py" --threads "$thr" curvetrain --a "$A" --b "$B" --n "$n" >"$work/t.json"
    echo "phistep $side $($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["images_per_second"])' "$work/t.json")" >>"$work/runs.txt"
  done
  tail -n 6 "$work/runs.txt"
done
echo "# load at end $(cut -d' ' -f1-3 /proc/loadavg)"
$py "$here/best_table.py" "$work/runs.txt" img/s
