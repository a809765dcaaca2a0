#!/usr/bin/env bash
# Installs the Debian packages agpt needs to build (and, with --test, to run its test suite).
# Only calls apt-get when something is missing.
set -euo pipefail

packages=(g++ cmake ninja-build make pkg-config libopenblas-openmp-dev libtomlplusplus-dev
          libcli11-dev nlohmann-json3-dev libfmt-dev libgtest-dev zlib1g-dev libsnappy-dev libzstd-dev libicu-dev libcairo2-dev fonts-dejavu-core)
# `agpt dashboard`: the HTTP server, and node to fetch the page's chart library from npm (web/).
packages+=(libcpp-httplib-dev nodejs)
packages+=(libopenmpi-dev openmpi-bin)
if [[ "${1:-}" == "--test" ]]; then
    # PyTorch and NumPy are the independent references the tests compare against.
    packages+=(python3 python3-torch python3-numpy clang-format)
    # The dashboard's end-to-end test drives Debian's headless Chromium.
    packages+=(chromium)
fi

# The dashboard's chart library (bundled into agpt at build time) and the browser driver of its
# test, as pinned in web/package-lock.json; reinstalled only when the lock file changed.
npm_ci() {
    local web
    web="$(cd "$(dirname "$0")/.." && pwd)/web"
    if [[ ! -f "$web/node_modules/.package-lock.json" || "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]]; then
        if ! command -v npm >/dev/null; then
            echo "setup: npm is missing (install Debian's npm, or Node.js with npm)" >&2
            exit 1
        fi
        echo "setup: npm ci in $web"
        if ! (cd "$web" && npm ci --no-audit --no-fund); then
            echo "setup: npm ci in $web failed" >&2
            exit 1
        fi
    fi
}
trap 'if [[ $? -eq 0 ]]; then npm_ci; fi' EXIT

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
