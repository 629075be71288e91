#!/usr/bin/env bash
# Crash safety (issue 13): `train` and `curve train` killed with SIGKILL at
# random moments, a bounded number of times, on a small Fashion-MNIST
# subset.  After every kill the last checkpoint loads; `train --resume`
# continues, and the final model, optimizer file and log equal an
# uninterrupted run's byte for byte (one log record per epoch); no
# temporary file of ours remains.  The same for `curve train --resume`.
set -u
bin=${MC_BIN:-./modeconn}
seed=${CRASH_SEED:-$$}
RANDOM=$seed
dir=$(mktemp -d /tmp/mc_crash_XXXXXX)
[ -n "${CRASH_KEEP:-}" ] || trap 'rm -rf "$dir"' EXIT
fail() { echo "crash_safety: FAIL (seed $seed): $*" >&2; exit 1; }
# run_kill I ERR MS PATTERN ARGS...: runs modeconn ARGS in the background
# and kills it (SIGKILL) after MS milliseconds -- for odd I, after that as
# soon as a temporary file matching PATTERN appears: the window where a torn
# pair, a stale temporary or a doubled log record arise.  Sets killed (1 if
# it was still running) and rc (its exit status).
run_kill() {
  local i=$1 err=$2 ms=$3 pat=$4
  shift 4
  "$bin" "$@" > /dev/null 2>> "$err" &
  local pid=$!
  sleep "$((ms / 1000)).$(printf "%03d" $((ms % 1000)))"
  if [ $((i % 2)) = 1 ]; then
    for _ in $(seq 1 200); do
      compgen -G "$pat" > /dev/null && break
      sleep 0.005
    done
  fi
  killed=0
  kill -9 $pid 2> /dev/null && killed=1
  wait $pid 2> /dev/null
  rc=$?
}
# finish REF OUT ERR COMMAND...: the last run (resuming OUT if it exists)
# ends at the uninterrupted REF byte for byte, with its .train file, one
# log record per epoch 1..12 and no temporary file of ours
finish() {
  local ref=$1 out=$2 err=$3
  shift 3
  local args=("$@" --out "$out")
  [ -f "$out" ] && args+=(--resume "$out")
  "$bin" "${args[@]}" > /dev/null 2>> "$err" || { cat "$err" >&2; fail "final resume of $out"; }
  cmp -s "$ref" "$out" || fail "resumed $out differs from the uninterrupted run"
  cmp -s "$ref.train" "$out.train" || fail "resumed $out.train differs"
  local epochs
  epochs=$(grep -o '"epoch": [0-9]*' "$out.log.jsonl" | grep -o '[0-9]*$' | tr '\n' ' ')
  [ "$epochs" = "$(seq -s " " 1 12) " ] || fail "$out: log epochs are '$epochs', expected one record per epoch 1..12"
  ls "$dir" | grep -q '\.tmp\.' && fail "temporary files remain: $(ls "$dir" | grep '\.tmp\.')"
  return 0
}
T="--arch mlp --widths 512 --train-subset 1000 --test-subset 200 --batch 50 --epochs 12 --seed 7 --threads 1"
"$bin" train $T --out "$dir/ref.st" > /dev/null 2>&1 || fail "reference run"
kills=0 resumed=0
for i in $(seq 1 10); do
  args=(train $T --out "$dir/run.st")
  [ -f "$dir/run.st" ] && { args+=(--resume "$dir/run.st"); resumed=$((resumed + 1)); }
  run_kill "$i" "$dir/err.txt" $((RANDOM % 1000)) "$dir/run.st.tmp.*" "${args[@]}"
  kills=$((kills + killed))
  if [ -f "$dir/run.st" ]; then
    "$bin" eval --model "$dir/run.st" --test-subset 50 --threads 1 > /dev/null 2>&1 || fail "checkpoint after kill $i does not load"
  fi
done
finish "$dir/ref.st" "$dir/run.st" "$dir/err.txt" train $T
echo "crash_safety: train killed $kills times ($resumed resumes), final model identical to the uninterrupted run"

# curve train: the same loop of kills and --resume (bends, momenta and the
# aligned B come back from OUT.train; the alignment is not rerun)
C="--a $dir/ref.st --b $dir/other.st --arch mlp --train-subset 1000 --test-subset 100 --batch 50 --epochs 12 --align corr --samples 500 --bn-samples 200 --eval-every 4 --seed 2 --threads 1"
"$bin" train ${T/--seed 7/--seed 8} --out "$dir/other.st" > /dev/null 2>&1 || fail "second endpoint"
t0=$(date +%s%3N)
"$bin" curve train $C --out "$dir/cref.st" > /dev/null 2>&1 || fail "curve reference"
# kill within the run's duration on this machine (data loading and the
# alignment alone can take a second under load)
dur=$(($(date +%s%3N) - t0 + 1))
ckills=0 cresumed=0
for i in $(seq 1 8); do
  args=(curve train $C --out "$dir/c.st")
  [ -f "$dir/c.st" ] && { args+=(--resume "$dir/c.st"); cresumed=$((cresumed + 1)); }
  run_kill "$i" "$dir/cerr.txt" $(( (RANDOM * 32768 + RANDOM) % dur )) "$dir/c.st*.tmp.*" "${args[@]}"
  ckills=$((ckills + killed))
  if [ $killed = 0 ]; then
    # finished before the kill: start over, so that later kills still land
    [ $rc = 0 ] || fail "curve run $i failed: $(tail -1 "$dir/cerr.txt")"
    cmp -s "$dir/cref.st" "$dir/c.st" || fail "curve run $i completed with another result"
    rm -f "$dir/c.st" "$dir/c.st.train"
  fi
  if [ -f "$dir/c.st" ]; then
    "$bin" curve eval --curve "$dir/c.st" --points 2 --train-subset 200 --test-subset 50 --bn-samples 50 --threads 1 \
      > /dev/null 2>&1 || fail "curve file after kill $i does not load"
  fi
done
finish "$dir/cref.st" "$dir/c.st" "$dir/cerr.txt" curve train $C
echo "crash_safety: curve train killed $ckills times ($cresumed resumes), final curve identical to the uninterrupted run"
