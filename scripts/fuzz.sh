#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz/ with clang
# (-fsanitize=fuzzer,address,undefined) into build-fuzz/ and runs each one
# for SECONDS (default 60) on a copy of its seed corpus, with its
# dictionary.  Exits non-zero on the first finding (the crashing input is
# left in build-fuzz/findings/HARNESS/); prints each harness's execution
# count.
#   scripts/fuzz.sh [SECONDS] [HARNESS...]   e.g. scripts/fuzz.sh 30 spec idx
#   FUZZ_NICE=19 runs the fuzzers at low priority
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
shift || true
all=(safetensors idx cifar spec curve report_json)
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=("${all[@]}")
out="$root/build-fuzz"
mkdir -p "$out"
CC=${CC:-clang}
command -v "$CC" > /dev/null || { echo "fuzz.sh: $CC not found (scripts/install-deps.sh installs clang)" >&2; exit 2; }
flags=(-std=c17 -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -fno-omit-frame-pointer -fopenmp -I"$root/include" -I"$root/src" -I"$root/tests/fuzz"
       $(pkg-config --cflags jansson))
# the whole library (the curve loader's file also holds the trainer, which
# reaches the executor), built once into an archive with coverage
obpc="/usr/lib/$(gcc -print-multiarch)/openblas-openmp/pkgconfig"
libs=($(PKG_CONFIG_PATH="$obpc" pkg-config --libs openblas jansson plplot) -ldnnl -lz -lm -Wl,-rpath,"$obpc/..")
flags+=($(pkg-config --cflags plplot))
libsrc=("$root"/src/{core,nn,model,data,train,align,curve,eval,io}/*.c "$root"/src/nn/*/*.c)
archive="$out/libmodeconn_fuzz.a"
if [ ! -f "$archive" ] || [ -n "$(find "$root/src" "$root/include" -newer "$archive" -name '*.[ch]' | head -1)" ]; then
  echo "fuzz.sh: building $archive"
  rm -rf "$out/obj" && mkdir -p "$out/obj"
  for f in "${libsrc[@]}"; do
    o="$out/obj/$(basename "$(dirname "$f")")_$(basename "${f%.c}").o"
    isa=() # as CMakeLists.txt: only the kernel variant files get their instruction set
    case "$f" in *_avx2.c) isa=(-mavx2 -mfma) ;; esac
    "$CC" "${flags[@]/-fsanitize=fuzzer,/-fsanitize=fuzzer-no-link,}" "${isa[@]}" -c "$f" -o "$o" &
    while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n; done
  done
  wait
  rm -f "$archive" && ar rcs "$archive" "$out"/obj/*.o
fi
for h in "${harnesses[@]}"; do
  src="$root/tests/fuzz/fuzz_$h.c"
  [ -f "$src" ] || { echo "fuzz.sh: no harness $src" >&2; exit 2; }
  bin="$out/fuzz_$h"
  if [ ! -x "$bin" ] || [ -n "$(find "$root/src" "$root/tests/fuzz" "$root/include" -newer "$bin" -name '*.[ch]' | head -1)" ] || [ "$archive" -nt "$bin" ]; then
    echo "fuzz.sh: building $bin"
    "$CC" "${flags[@]}" "$src" "$archive" "${libs[@]}" -o "$bin" \
      > "$out/build_$h.log" 2>&1 || { cat "$out/build_$h.log" >&2; exit 1; }
  fi
done
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:malloc_limit_mb=2048"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
status=0
for h in "${harnesses[@]}"; do
  corpus="$out/corpus/$h"
  findings="$out/findings/$h"
  mkdir -p "$corpus" "$findings"
  cp -n "$root"/tests/fuzz/corpus/"$h"/* "$corpus"/ 2> /dev/null || true
  dict=()
  [ -f "$root/tests/fuzz/$h.dict" ] && dict=(-dict="$root/tests/fuzz/$h.dict")
  log="$out/fuzz_$h.log"
  set +e
  ${FUZZ_NICE:+nice -n "$FUZZ_NICE"} "$out/fuzz_$h" "${dict[@]}" -max_total_time="$secs" -max_len=65536 \
    -rss_limit_mb=2560 -timeout=20 -artifact_prefix="$findings/" -print_final_stats=1 "$corpus" > "$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  if [ $rc -ne 0 ]; then
    echo "fuzz.sh: fuzz_$h FAILED (rc $rc) after $execs executions; see $log and $findings/" >&2
    status=1
  else
    echo "fuzz.sh: fuzz_$h clean: $execs executions in ${secs}s"
  fi
done
exit $status
