#!/usr/bin/env bash
# Installs every Debian package modeconn needs to build, test, plot and
# benchmark, and fuzz (clang, libFuzzer, clang's OpenMP runtime: scripts/fuzz.sh).
# Idempotent: packages already present are skipped.
set -euo pipefail
PKGS=(build-essential cmake pkg-config
      libdnnl-dev libopenblas-openmp-dev zlib1g-dev libjansson-dev libcmocka-dev
      libplplot-dev plplot-driver-cairo
      dataset-fashion-mnist
      python3-torch python3-torchvision python3-numpy python3-scipy
      libtcmalloc-minimal4
      clang libclang-rt-14-dev libomp-14-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
