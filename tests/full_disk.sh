#!/usr/bin/env bash
# Full disk (issue 13): every writer of modeconn, pointed at a full tmpfs,
# fails with exit 1 and a message naming its file; the previous file is
# left intact and no temporary file remains.  Needs to mount a tmpfs
# (root); otherwise skipped (exit 77, which ctest reports as skipped).
set -u
bin=${MC_BIN:-./modeconn}
d=$(mktemp -d /tmp/mc_full_XXXXXX)
mnt="$d/mnt"
mkdir "$mnt"
if ! mount -t tmpfs -o size=2m tmpfs "$mnt" 2> "$d/mount.txt"; then
  echo "full_disk: skipped: cannot mount a tmpfs ($(cat "$d/mount.txt"))"
  rm -rf "$d"
  exit 77
fi
trap 'umount "$mnt"; rm -rf "$d"' EXIT
fail() { echo "full_disk: FAIL: $*" >&2; exit 1; }
S="--arch mlp --widths 16 --train-subset 300 --test-subset 100 --batch 50 --threads 1"
"$bin" train $S --epochs 1 --seed 1 --out "$d/a.st" > /dev/null 2>&1 || fail "endpoint a"
"$bin" train $S --epochs 1 --seed 2 --out "$d/b.st" > /dev/null 2>&1 || fail "endpoint b"
"$bin" curve train --a "$d/a.st" --b "$d/b.st" $S --epochs 1 --align none --eval-every 0 --out "$d/c.st" \
  > /dev/null 2>&1 || fail "curve"
n=0
# case NAME FILE OLD -- command...: FILE (in the tmpfs) starts as a copy of
# OLD (or absent if OLD is -), the disk is filled (but for $leave bytes:
# a write that fails part way), the command must fail naming FILE and
# leave it as it was
leave=0
case_() {
  local name=$1 file=$2 old=$3
  shift 4
  rm -f "$mnt/filler" "$mnt"/*.tmp.*
  if [ "$old" != - ]; then cp "$old" "$file"; cp "$old" "$d/backup"; else rm -f "$file"; fi
  dd if=/dev/zero of="$mnt/filler" bs=4096 > /dev/null 2>&1
  [ "$leave" = 0 ] || truncate -s -"$leave" "$mnt/filler"
  "$@" > /dev/null 2> "$d/err.txt"
  local rc=$?
  [ $rc = 1 ] || { cat "$d/err.txt" >&2; fail "$name: exit $rc, expected 1"; }
  grep -qF "$file" "$d/err.txt" || { cat "$d/err.txt" >&2; fail "$name: the message does not name $file"; }
  if [ "$old" != - ]; then cmp -s "$file" "$d/backup" || fail "$name: the previous $file was damaged"; fi
  ls "$mnt" | grep -q '\.tmp\.' && fail "$name: temporary files remain: $(ls "$mnt" | grep '\.tmp\.')"
  echo "full_disk: $name: exit 1, $(grep -m1 'error' "$d/err.txt")"
  n=$((n + 1))
}
case_ "train checkpoint" "$mnt/m.st" "$d/a.st" -- "$bin" train $S --epochs 1 --out "$mnt/m.st" --log "$d/l.jsonl"
case_ "train log" "$mnt/l.jsonl" - -- "$bin" train $S --epochs 1 --out "$d/x.st" --log "$mnt/l.jsonl"
case_ "eval --json" "$mnt/e.json" "$d/a.st.log.jsonl" -- "$bin" eval --model "$d/a.st" --test-subset 100 --json "$mnt/e.json"
case_ "align --out" "$mnt/al.st" "$d/b.st" -- "$bin" align --a "$d/a.st" --b "$d/b.st" --samples 100 --train-subset 300 \
  --out "$mnt/al.st"
case_ "align --perm-out" "$mnt/perm.json" "$d/a.st.log.jsonl" -- "$bin" align --a "$d/a.st" --b "$d/b.st" --samples 100 \
  --train-subset 300 --out "$d/al.st" --perm-out "$mnt/perm.json"
case_ "interp --json" "$mnt/i.json" "$d/a.st.log.jsonl" -- "$bin" interp --a "$d/a.st" --b "$d/b.st" --points 2 \
  --train-subset 300 --test-subset 100 --json "$mnt/i.json"
case_ "interp --csv" "$mnt/i.csv" "$d/a.st.log.jsonl" -- "$bin" interp --a "$d/a.st" --b "$d/b.st" --points 2 \
  --train-subset 300 --test-subset 100 --csv "$mnt/i.csv"
case_ "curve train --out" "$mnt/c.st" "$d/c.st" -- "$bin" curve train --a "$d/a.st" --b "$d/b.st" $S --epochs 1 \
  --align none --eval-every 0 --out "$mnt/c.st" --log "$d/cl.jsonl"
case_ "plane --json" "$mnt/p.json" "$d/a.st.log.jsonl" -- "$bin" plane --curve "$d/c.st" --grid 2 --train-subset 300 \
  --test-subset 100 --bn-samples 100 --json "$mnt/p.json"
# the PLplot writers (plane --plot, report): with some space left, so that
# PLplot's output is cut off part way (a truncated PNG must not appear)
"$bin" plane --curve "$d/c.st" --grid 2 --train-subset 300 --test-subset 100 --bn-samples 100 --json "$d/p.json" \
  --plot "$d/ok" > /dev/null 2>&1 || fail "plane plot"
leave=20000
case_ "plane --plot" "$mnt/pl_loss.png" "$d/ok_acc.png" -- "$bin" plane --curve "$d/c.st" --grid 2 --train-subset 300 \
  --test-subset 100 --bn-samples 100 --plot "$mnt/pl"
mkdir -p "$d/run" "$mnt/rep" && (cd "$d/run" && python3 - <<'EOF'
import json
w = lambda n, o: open(n, 'w').write(json.dumps(o))
for n in ['a_eval', 'b_eval']: w(n + '.json', {'loss': 0.3, 'accuracy': 0.9})
w('align.json', {'method': 'corr', 'groups': []})
w('info.json', {'arch': 'mlp', 'data': 'fashion-mnist', 'settings': 'test'})
for n in ['interp_unaligned', 'interp_aligned', 'curve_unaligned', 'curve_aligned']:
    w(n + '.json', {'t': [0, 0.5, 1], 'test_accuracy': [0.9, 0.5, 0.9], 'test_loss': [0.3, 1, 0.3]})
w('plane_aligned.json', {'grid': 2, 'a': [0, 1], 'b': [0, 1], 'test_loss': [1, 2, 3, 4], 'test_accuracy': [.1, .2, .3, .4],
                         'x_norm': 1, 'y_perp_norm': 1, 'theta2_a': 0.5, 'curve_a': [0, 0.5, 1], 'curve_b': [0, 1, 0]})
EOF
) || fail "report inputs"
case_ "report (plots)" "$mnt/rep/path_accuracy.png" "$d/ok_loss.png" -- "$bin" report --run "$d/run" --out "$mnt/rep"
leave=0
echo "full_disk: all $n writers fail cleanly on a full disk"
