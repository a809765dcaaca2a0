#!/usr/bin/env bash
# GPT-2 124M training step at llm.c's CPU reference shape (issue 6): B=4, T=64, 2 threads.
# llm.c's train_gpt2.c took about 4.6 s per step on this machine; the target is <= 1.5 s.
#
#   bench/gpt2_step_bench.sh [BUILD_DIR] [extra agpt_gpt2_bench flags]
#
# Builds agpt_gpt2_bench in BUILD_DIR (default build/release) if needed, prints the load
# average before and after (timings on a shared machine are only meaningful when it is
# quiet), then the per-step lines and a JSON summary: medians of fwd_bwd_s (zero_grad, forward,
# LM head + cross-entropy, backward), update_s (AdamW) and step_s (both, what llm.c times).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
shift || true
if [[ ! -x "$build/tests/agpt_gpt2_bench" ]]; then
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    ninja -C "$build" agpt_gpt2_bench >/dev/null
fi
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$build/tests/agpt_gpt2_bench" \
    --flavor 124M --batch 4 --seq 64 --threads 2 --steps 10 --warmup 2 "$@"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "llm.c train_gpt2.c reference: 4.6 s/step (issue 6); target <= 1.5 s/step"
