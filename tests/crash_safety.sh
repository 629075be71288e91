#!/usr/bin/env bash
# Crash safety (issue 13): `train` and `curve train` killed with SIGKILL at
# random moments, a bounded number of times, on a small Fashion-MNIST
# subset.  After every kill the last checkpoint loads; `train --resume`
# continues, and the final model, optimizer file and log equal an
# uninterrupted run's byte for byte (one log record per epoch); no
# temporary file of ours remains.  A killed `curve train` leaves either the
# old or the complete new curve file, never a damaged one.
set -u
bin=${MC_BIN:-./modeconn}
seed=${CRASH_SEED:-$$}
RANDOM=$seed
dir=$(mktemp -d /tmp/mc_crash_XXXXXX)
[ -n "${CRASH_KEEP:-}" ] || trap 'rm -rf "$dir"' EXIT
fail() { echo "crash_safety: FAIL (seed $seed): $*" >&2; exit 1; }
T="--arch mlp --widths 512 --train-subset 1000 --test-subset 200 --batch 50 --epochs 12 --seed 7 --threads 1"
"$bin" train $T --out "$dir/ref.st" > /dev/null 2>&1 || fail "reference run"
kills=0 resumed=0
for i in $(seq 1 10); do
  args=(train $T --out "$dir/run.st")
  [ -f "$dir/run.st" ] && { args+=(--resume "$dir/run.st"); resumed=$((resumed + 1)); }
  "$bin" "${args[@]}" > /dev/null 2>> "$dir/err.txt" &
  pid=$!
  sleep "0.$(printf "%03d" $((RANDOM % 1000)))"
  if [ $((i % 2)) = 1 ]; then
    # the other half: while a checkpoint file is being written (the window
    # where a torn pair, a stale temporary or a doubled log record arise)
    for _ in $(seq 1 200); do
      compgen -G "$dir/run.st.tmp.*" > /dev/null && break
      sleep 0.005
    done
  fi
  if kill -9 $pid 2> /dev/null; then kills=$((kills + 1)); fi
  wait $pid 2> /dev/null
  if [ -f "$dir/run.st" ]; then
    "$bin" eval --model "$dir/run.st" --test-subset 50 --threads 1 > /dev/null 2>&1 || fail "checkpoint after kill $i does not load"
  fi
done
args=(train $T --out "$dir/run.st")
[ -f "$dir/run.st" ] && args+=(--resume "$dir/run.st")
"$bin" "${args[@]}" > /dev/null 2>> "$dir/err.txt" || { cat "$dir/err.txt" >&2; fail "final resume"; }
cmp -s "$dir/ref.st" "$dir/run.st" || fail "resumed model differs from the uninterrupted one"
cmp -s "$dir/ref.st.train" "$dir/run.st.train" || fail "resumed optimizer file differs"
epochs=$(grep -o '"epoch": [0-9]*' "$dir/run.st.log.jsonl" | grep -o '[0-9]*$' | tr '\n' ' ')
[ "$epochs" = "$(seq -s " " 1 12) " ] || fail "log epochs are '$epochs', expected one record per epoch 1..12"
ls "$dir" | grep -q '\.tmp\.' && fail "temporary files remain: $(ls "$dir" | grep '\.tmp\.')"
echo "crash_safety: train killed $kills times ($resumed resumes), final model identical to the uninterrupted run"

# curve train: no resume, but the output is replaced atomically
C="--a $dir/ref.st --b $dir/other.st --arch mlp --train-subset 1000 --test-subset 100 --batch 50 --epochs 12 --align none --eval-every 0 --threads 1"
"$bin" train ${T/--seed 7/--seed 8} --out "$dir/other.st" > /dev/null 2>&1 || fail "second endpoint"
"$bin" curve train $C --seed 1 --out "$dir/old.st" > /dev/null 2>&1 || fail "curve reference (old)"
"$bin" curve train $C --seed 2 --out "$dir/new.st" > /dev/null 2>&1 || fail "curve reference (new)"
ckills=0
for i in $(seq 1 4); do
  cp "$dir/old.st" "$dir/c.st"
  "$bin" curve train $C --seed 2 --out "$dir/c.st" > /dev/null 2>&1 &
  pid=$!
  sleep "0.$(printf '%03d' $((RANDOM % 900 + 50)))"
  if kill -9 $pid 2> /dev/null; then ckills=$((ckills + 1)); fi
  wait $pid 2> /dev/null
  cmp -s "$dir/c.st" "$dir/old.st" || cmp -s "$dir/c.st" "$dir/new.st" || fail "curve file damaged by kill $i"
done
"$bin" curve train $C --seed 2 --out "$dir/c.st" > /dev/null 2>&1 || fail "curve rerun"
cmp -s "$dir/c.st" "$dir/new.st" || fail "curve rerun differs"
ls "$dir" | grep -q '\.tmp\.' && fail "temporary files remain after the curve rerun: $(ls "$dir" | grep '\.tmp\.')"
echo "crash_safety: curve train killed $ckills times, the curve file was always the old or the new one"
