#!/usr/bin/env bash
# Installs the Debian packages agpt needs to build (and, with --test, to run its test suite).
# Only calls apt-get when something is missing.
set -euo pipefail

packages=(g++ cmake ninja-build make pkg-config libopenblas-openmp-dev libtomlplusplus-dev
          libcli11-dev nlohmann-json3-dev libfmt-dev libgtest-dev zlib1g-dev libsnappy-dev libzstd-dev libicu-dev libcairo2-dev fonts-dejavu-core)
packages+=(libopenmpi-dev openmpi-bin)
if [[ "${1:-}" == "--test" ]]; then
    # PyTorch and NumPy are the independent references the tests compare against.
    packages+=(python3 python3-torch python3-numpy clang-format)
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    exit 0
fi

echo "setup: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
