#!/bin/sh
# modeconn vs PyTorch on this machine, as speed ratios.
#
#   bench/run.sh [--quick] [--reps N] [--only KINDS] [--workdir DIR --keep] [bench.py options]
#
# Runs every workload three ways, interleaved: modeconn (--threads 2,
# --backend $MODECONN_BACKEND, default auto), PyTorch as shipped
# (torch.set_num_threads(2)), PyTorch tuned (LD_PRELOAD=tcmalloc,
# OPENBLAS_NUM_THREADS=1). Prints a table and writes
# bench/results-<date>.md (bench/results-<date>-quick.md with --quick).
# `bench/run.sh --help` lists every size option. Timings are never
# asserted anywhere; the numbers are only as quiet as the machine.
#
# Environment: MODECONN_BACKEND (auto|dnnl|ref), MODECONN (path of the CLI,
# default build/modeconn), BENCH_REPS.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
py=/usr/bin/python3
if ! "$py" -c 'import torch, numpy, scipy' 2>/dev/null; then
  echo "bench: $py cannot import torch, numpy and scipy (apt-get install python3-torch python3-scipy)" >&2
  exit 1
fi
mc=${MODECONN:-$root/build/modeconn}
if [ ! -x "$mc" ]; then
  if [ -f "$root/build/CMakeCache.txt" ] && [ -z "${MODECONN:-}" ]; then
    echo "bench: building $mc" >&2
    cmake --build "$root/build" -j2 >&2
  else
    echo "bench: $mc not found; configure and build first (cmake -S . -B build && cmake --build build -j2)" >&2
    exit 1
  fi
fi
export MODECONN="$mc" PYTHONDONTWRITEBYTECODE=1
exec "$py" "$here/bench.py" "$@"
