#!/bin/sh
# The adversarial workloads of issue 14, modeconn vs PyTorch, as speed
# ratios (bench/results-2026-12-02-pgd.md):
#   attack-{tinyten,resnet20}  PGD-5 evaluation of the 10,000 test images
#                              (`modeconn attack`: clean pass + PGD pass)
#   advtrain-{tinyten,resnet20} one Madry epoch over 12,800 training images
#                              (`modeconn train --adv pgd`, its epoch line)
#   advpoint-tinyten           a robust path point: BN recomputed on PGD
#                              examples of 10,000 training images, clean and
#                              PGD test on 10,000 (`modeconn interp --adv pgd
#                              --points 3`, seconds / 3)
# Each repetition runs modeconn, PyTorch as shipped and PyTorch tuned one
# after the other (interleaved); the best of --reps is reported per side.
#
#   bench/pgd.sh [REPS] [WORKLOADS...]     e.g. bench/pgd.sh 2 attack-tinyten advtrain-tinyten
#
# Sides: modeconn --threads 2 --backend ${MODECONN_BACKEND:-dnnl};
# PyTorch shipped: torch.set_num_threads(2), LD_PRELOAD and
# OPENBLAS_NUM_THREADS unset; PyTorch tuned: the same + LD_PRELOAD=tcmalloc,
# OPENBLAS_NUM_THREADS=1, channels_last model and inputs (mkldnn on, the
# default). Environment: MODECONN (the CLI, default build/modeconn),
# BENCH_DIR (scratch, default a fresh temp dir; reused: the setup models
# are kept), ATTACK_N (test images attacked, default 10000), ADV_N
# (training images of the Madry epoch, default 12800), POINT_N (training
# images of the BN recompute and test images of a path point, default 10000). Prints one line per run
# and a table; timings are never asserted.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
mc=${MODECONN:-$root/build/modeconn}
if [ ! -x "$mc" ]; then
  echo "bench: $mc not found or not executable; build first (cmake -S . -B build && cmake --build build -j2) or set MODECONN" >&2
  exit 1
fi
be=${MODECONN_BACKEND:-dnnl}
py=/usr/bin/python3
reps=${1:-1}
[ $# -gt 0 ] && shift
work=${BENCH_DIR:-$(mktemp -d /tmp/mc_pgd_bench.XXXXXX)}
mkdir -p "$work"
tcm=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4
an=${ATTACK_N:-10000}
tn=${ADV_N:-12800}
pn=${POINT_N:-10000}
wl=${*:-attack-tinyten attack-resnet20 advtrain-tinyten advtrain-resnet20 advpoint-tinyten}
export PYTHONDONTWRITEBYTECODE=1
echo "# $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); $($mc --version 2>/dev/null | head -1); torch $($py -c 'import torch; print(torch.__version__)')"
echo "# scratch $work, backend $be, reps $reps, attack $an test images, Madry epoch $tn training images, path point $pn/$pn"

# setup (not timed): clean endpoints, 1 epoch on 6,400 images, seeds 1 and 2
for arch in tinyten resnet20; do
  for seed in 1 2; do
    f=$work/$arch-$seed.safetensors
    [ -f "$f" ] || "$mc" train --arch $arch --epochs 1 --seed $seed --train-subset 6400 --test-subset 1000 \
      --out "$f" --threads 2 --backend "$be" >/dev/null
  done
done

# a JSON file's key, or the key of a JSON-lines file's last record
jget() {
  $py -c "
import json, sys
s = open(sys.argv[1]).read().strip()
try:
    j = json.loads(s)
except ValueError:
    j = json.loads(s.splitlines()[-1])
print(j[sys.argv[2]])" "$1" "$2"
}

# modeconn seconds of one workload
mc_run() {
  case $1 in
    attack-*) "$mc" attack --model "$work/${1#attack-}-1.safetensors" --test-subset $an --threads 2 \
                --backend "$be" --json "$work/mc.json" >/dev/null 2>&1
              jget "$work/mc.json" seconds ;;
    advtrain-*) rm -f "$work/adv.safetensors"* "$work/adv.log"
                "$mc" train --arch "${1#advtrain-}" --adv pgd --epochs 1 --train-subset $tn --test-subset 1 \
                  --eval-every 1000 --seed 1 --out "$work/adv.safetensors" --log "$work/adv.log" --threads 2 \
                  --backend "$be" >/dev/null 2>&1
                jget "$work/adv.log" seconds ;;
    advpoint-*) a=${1#advpoint-}
                "$mc" interp --a "$work/$a-1.safetensors" --b "$work/$a-2.safetensors" --adv pgd --points 3 \
                  --bn-samples $pn --test-subset $pn --threads 2 --backend "$be" --json "$work/mc.json" \
                  >/dev/null 2>&1
                $py -c "import json,sys; print(json.load(open(sys.argv[1]))['seconds'] / 3)" "$work/mc.json" ;;
  esac
}

# PyTorch seconds of one workload; $2 = shipped | tuned
torch_run() {
  if [ "$2" = tuned ]; then
    set -- "$1" env LD_PRELOAD=$tcm OPENBLAS_NUM_THREADS=1 $py "$here/pgd_torch.py" --channels-last
  else
    set -- "$1" env -u LD_PRELOAD -u OPENBLAS_NUM_THREADS $py "$here/pgd_torch.py"
  fi
  w=$1
  shift
  case $w in
    attack-*) "$@" attack --model "$work/${w#attack-}-1.safetensors" --n $an >"$work/t.json" ;;
    advtrain-*) "$@" advtrain --arch "${w#advtrain-}" --n $tn >"$work/t.json" ;;
    advpoint-*) a=${w#advpoint-}
                "$@" advpoint --a "$work/$a-1.safetensors" --b "$work/$a-2.safetensors" --points 3 \
                  --bn-samples $pn --test-n $pn >"$work/t.json" ;;
  esac
  case $w in
    advpoint-*) jget "$work/t.json" seconds_per_point ;;
    *) jget "$work/t.json" seconds ;;
  esac
}

: >"$work/runs.txt"
r=1
while [ $r -le "$reps" ]; do
  for w in $wl; do
    s=$(mc_run $w); echo "$w modeconn $s" | tee -a "$work/runs.txt"
    s=$(torch_run $w shipped); echo "$w shipped $s" | tee -a "$work/runs.txt"
    s=$(torch_run $w tuned); echo "$w tuned $s" | tee -a "$work/runs.txt"
  done
  r=$((r + 1))
done
echo "# load at end $(cut -d' ' -f1-3 /proc/loadavg)"
$py "$here/best_table.py" "$work/runs.txt" seconds
