#!/bin/sh
# GoogLeNet (3x32x32, 100 classes, full width) speed: modeconn's executor
# (build/bench_exec, oneDNN backend) against PyTorch as shipped and tuned
# (bench/googlenet_torch.py), one thread pinned to one core, interleaved,
# REPS rounds.  Modes: train (forward + 3-head loss + backward), eval
# (forward, main head), recompute (BN-recompute forward, every head).
#
#   bench/googlenet.sh [REPS] [BATCH] [ITERS]     (defaults 2 64 5)
#
# Environment: BENCH_EXEC (default build/bench_exec), CORE (default 1).
# Timings are never asserted; on a shared machine read the ratios.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
reps=${1:-2} batch=${2:-64} iters=${3:-5}
be=${BENCH_EXEC:-$root/build/bench_exec}
core=${CORE:-1}
py=/usr/bin/python3
tcm=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
lscpu | grep 'Model name' || true
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$reps"); do
  for mode in train eval recompute; do
    flag=""
    [ "$mode" = eval ] && flag=--eval
    [ "$mode" = recompute ] && flag=--recompute
    taskset -c "$core" "$be" --arch googlenet --input 3x32x32 --classes 100 --backend dnnl \
      --threads 1 --batch "$batch" --iters "$iters" $flag
    env -u LD_PRELOAD -u OPENBLAS_NUM_THREADS taskset -c "$core" "$py" "$here/googlenet_torch.py" \
      --mode "$mode" --batch "$batch" --iters "$iters" --threads 1
    env LD_PRELOAD="$tcm" OPENBLAS_NUM_THREADS=1 taskset -c "$core" "$py" "$here/googlenet_torch.py" \
      --mode "$mode" --batch "$batch" --iters "$iters" --threads 1 --tuned
  done
done
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
