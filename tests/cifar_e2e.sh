#!/usr/bin/env bash
# The CIFAR path end to end (issue 15): Fashion-MNIST written as CIFAR-10
# binary files (3x32x32, tools/fashion2cifar.py: 2,000 training and 500
# test images), then experiments/table1.sh on `--data cifar10:DIR` at a
# tiny budget (tinyten, 1 pair, 1 epoch everywhere, 3 points): endpoints,
# the four curve rows (unaligned, PAM unaligned, PAM aligned, aligned), the
# line midpoints with none / reset / repair; then googlenet at 1/8 width
# (auxiliary heads, concat groups; unaligned and aligned rows). Checks the checkpoints are
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
# run_table ARCH OUT METHODS TRAIN_SUBSET [ARCH_FLAGS]: table1.sh at the tiny budget on the CIFAR-format files
run_table() {
  MC=$bin DATA=cifar10:$dir/data METHODS=$3 TRAIN_SUBSET=$4 ARCH_FLAGS=${5:-} EPOCHS=1 CURVE_EPOCHS=1 P_EPOCHS=1 POINTS=3 BN_SAMPLES=500 \
    SAMPLES=500 SAMPLES_ROUNDING=2 SELECT_SAMPLES=500 THREADS=0 bash "$src/experiments/table1.sh" "$1" 1 "$2" \
    > "$2.log" 2>&1 || { tail -20 "$2.log"; fail "table1.sh $1 exited $?"; }
}
# check_table ARCH OUT METHODS CHANCE: every file, numbers above CHANCE, the table's rows
check_table() {
  local p=$2/pair1 f
  "$bin" info --model "$p/m1.safetensors" | grep -q 'input 3x32x32, 10 classes' || fail "$1: m1 is not a 3x32x32 model"
  for f in eval1 eval2 $(for v in $3; do echo curve_$v; done) $(for v in $3; do [ "${v#pam}" = "$v" ] || echo perm_$v; done) \
           line_raw_none line_raw_reset line_raw_repair line_aligned_none line_aligned_reset line_aligned_repair; do
    [ -s "$p/$f.json" ] || fail "$1: $f.json missing"
  done
  /usr/bin/python3 - "$2" "$1" "$3" "$4" <<'PY' || fail "$1: result check"
import json, sys
out, arch, methods, chance = sys.argv[1], sys.argv[2], sys.argv[3].split(), float(sys.argv[4])
names = {"none": "unaligned", "pam_none": "PAM unaligned", "pam_corr": "PAM aligned", "corr": "aligned"}
p = out + "/pair1"
for s in (1, 2):
    a = json.load(open(f"{p}/eval{s}.json"))["accuracy"]
    assert a > chance, f"endpoint {s} accuracy {a}"
for v in methods:
    j = json.load(open(f"{p}/curve_{v}.json"))
    assert len(j["t"]) == 3, v
    assert j["metrics"]["test_accuracy"]["min"] > 0.1, (v, j["metrics"]["test_accuracy"])
t = open(out + "/table.md").read()
for row in ["endpoints", "| unaligned |", "| aligned |"] + [f"| {arch} {names[v]} |" for v in methods]:
    assert row in t, row
PY
}
all="none pam_none pam_corr corr"
run_table tinyten "$dir/tinyten" "$all" 0
check_table tinyten "$dir/tinyten" "$all" 0.3
# GoogLeNet at 1/8 width, 1,000 images: the aux heads train, the concat groups align (PAM on concats: test_pam)
run_table googlenet "$dir/googlenet" "none corr" 1000 "--width 0.125"
check_table googlenet "$dir/googlenet" "none corr" 0.12
"$bin" info --model "$dir/googlenet/pair1/m1.safetensors" | grep -q 'aux1' || fail "googlenet: no aux heads in the checkpoint"
"$bin" eval --model "$dir/tinyten/pair1/m1.safetensors" > /dev/null 2> "$dir/err" && fail "a 3x32x32 model evaluated on 1x28x28 data"
grep -q '1x28x28.*3x32x32' "$dir/err" || fail "refusal does not name both shapes: $(cat "$dir/err")"
echo "cifar_e2e: OK"
