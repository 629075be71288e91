#!/usr/bin/env bash
# The CIFAR path end to end (issue 15): Fashion-MNIST written as CIFAR-10
# binary files (3x32x32, tools/fashion2cifar.py: 2,000 training and 500
# test images), then experiments/table1.sh on `--data cifar10:DIR` at a
# tiny budget (tinyten, 1 pair, 1 epoch everywhere, 3 points): endpoints,
# the four curve rows (unaligned, PAM unaligned, PAM aligned, aligned), the
# line midpoints with none / reset / repair. Checks the checkpoints are
# 3x32x32 models, every result file is there with numbers above chance, the
# table has its rows, and a CIFAR model given Fashion-MNIST data is refused
# with the shapes named.
set -u
bin=${MC_BIN:-./modeconn}
src=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /tmp/mc_cifar_XXXXXX)
[ -n "${CIFAR_KEEP:-}" ] || trap 'rm -rf "$dir"' EXIT
fail() { echo "cifar_e2e: FAIL: $*" >&2; exit 1; }
/usr/bin/python3 "$src/tools/fashion2cifar.py" "$dir/data" --train 2000 --test 500 || fail "fashion2cifar.py"
MC=$bin DATA=cifar10:$dir/data EPOCHS=1 CURVE_EPOCHS=1 P_EPOCHS=1 POINTS=3 BN_SAMPLES=500 SAMPLES=500 \
  SAMPLES_ROUNDING=2 SELECT_SAMPLES=500 THREADS=0 bash "$src/experiments/table1.sh" tinyten 1 "$dir/out" \
  > "$dir/table1.log" 2>&1 || { tail -20 "$dir/table1.log"; fail "table1.sh exited $?"; }
p=$dir/out/pair1
"$bin" info --model "$p/m1.safetensors" | grep -q 'input 3x32x32, 10 classes' || fail "m1 is not a 3x32x32 model"
for f in eval1 eval2 curve_none curve_pam_none curve_pam_corr curve_corr perm_pam_none perm_pam_corr \
         line_raw_none line_raw_reset line_raw_repair line_aligned_none line_aligned_reset line_aligned_repair; do
  [ -s "$p/$f.json" ] || fail "$f.json missing"
done
/usr/bin/python3 - "$dir/out" <<'PY' || fail "result check"
import json, sys
out = sys.argv[1]
p = out + "/pair1"
for s in (1, 2):
    a = json.load(open(f"{p}/eval{s}.json"))["accuracy"]
    assert a > 0.3, f"endpoint {s} accuracy {a} (chance 0.1)"
for v in ("none", "pam_none", "pam_corr", "corr"):
    j = json.load(open(f"{p}/curve_{v}.json"))
    assert len(j["t"]) == 3, v
    assert j["metrics"]["test_accuracy"]["min"] > 0.15, (v, j["metrics"]["test_accuracy"])
t = open(out + "/table.md").read()
for row in ("endpoints", "unaligned", "PAM unaligned", "PAM aligned", "| tinyten aligned", "| aligned |"):
    assert row in t, row
PY
"$bin" eval --model "$p/m1.safetensors" > /dev/null 2> "$dir/err" && fail "a 3x32x32 model evaluated on 1x28x28 data"
grep -q '1x28x28.*3x32x32' "$dir/err" || fail "refusal does not name both shapes: $(cat "$dir/err")"
echo "cifar_e2e: OK"
