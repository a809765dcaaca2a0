#!/usr/bin/env bash
# Data parallelism on cuda over the emulated backend (tests/cuda/cuda_data_parallel_emu.cpp):
# the one-process reference first, then DP=2 under mpirun, which compares itself with it.
# Usage: cuda_data_parallel_emu_test.sh path/to/agpt_cuda_emu_tests
set -u
bin="$1"
source "$(dirname "$0")/../mpi_test_lib.sh"
filter=--gtest_filter=CudaDataParallel.*:CudaExpertParallel.*
AGPT_CUDA_DP_DIR="$work" "$bin" "$filter" >"$work/single.log" 2>&1
check one_process $? "$(tail -20 "$work/single.log")"
AGPT_CUDA_DP_DIR="$work" mpirun_np 2 -x AGPT_CUDA_DP_DIR -x OMP_NUM_THREADS=1 "$bin" "$filter" \
    >"$work/dp2.log" 2>&1
check two_ranks $? "$(tail -40 "$work/dp2.log")"
echo "cuda data parallel (emulated): $passed passed, $failed failed"
[[ $failed -eq 0 ]]
