#!/usr/bin/env bash
# The whole test suite: installs missing Debian packages, builds with
# warnings as errors, and runs every test with ctest.
#   scripts/test.sh              Release build in build-test/
#   scripts/test.sh --sanitize   AddressSanitizer + UBSan build in build-asan/
# Extra arguments after -- go to ctest (e.g. -- -R test_lap).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=release
ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) mode=asan ;;
    --) shift; ctest_args=("$@"); break ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
[ "${SKIP_INSTALL:-0}" = 1 ] || bash "$root/scripts/install-deps.sh"
if [ $mode = asan ]; then
  dir="$root/build-asan"
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMC_WERROR=ON -DMC_SANITIZE=ON > /dev/null
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
  export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
else
  dir="$root/build-test"
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DMC_WERROR=ON > /dev/null
fi
cmake --build "$dir" -j"$(nproc)"
cd "$dir"
ctest --output-on-failure --timeout 900 "${ctest_args[@]}"
