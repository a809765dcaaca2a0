#!/usr/bin/env bash
# Data, expert and tensor parallelism on cuda over the emulated backend
# (tests/cuda/cuda_data_parallel_emu.cpp, moe_gpu_ep_emu.cpp, transformer_gpu_tp_emu.cpp): the
# one-process reference first, then 2 ranks under mpirun, which compare themselves with it, then
# one process resuming the DP=2 ZeRO-1 and the TP=2 checkpoints. The mesh combinations
# (CudaMesh.FourRanks*) run on 4 ranks after the 2-rank stage, before the resumes.
# Usage: cuda_data_parallel_emu_test.sh path/to/agpt_cuda_emu_tests
set -u
bin="$1"
source "$(dirname "$0")/../mpi_test_lib.sh"
# ZeroOneMatchesZeroZero runs on two ranks only, ZeroOneCheckpointResumesOnOneProcess after it;
# TensorParallelCheckpointResumesOnOneProcess after TensorParallelTwoRanksMatchOneProcess.
resume=CudaDataParallel.ZeroOneCheckpointResumesOnOneProcess:CudaDataParallel.TensorParallelCheckpointResumesOnOneProcess:CudaMesh.Resume*
suites=CudaDataParallel.*:CudaExpertParallel.*:CudaTensorParallel.*:CudaMesh.Bf16*
AGPT_CUDA_DP_DIR="$work" "$bin" "--gtest_filter=$suites:-CudaDataParallel.ZeroOne*:$resume" \
    >"$work/single.log" 2>&1
check one_process $? "$(tail -20 "$work/single.log")"
AGPT_CUDA_DP_DIR="$work" mpirun_np 2 -x AGPT_CUDA_DP_DIR -x OMP_NUM_THREADS=1 "$bin" \
    "--gtest_filter=$suites:-$resume" >"$work/dp2.log" 2>&1
check two_ranks $? "$(tail -40 "$work/dp2.log")"
AGPT_CUDA_DP_DIR="$work" mpirun_np 4 -x AGPT_CUDA_DP_DIR -x OMP_NUM_THREADS=1 "$bin" \
    "--gtest_filter=CudaMesh.FourRanks*" >"$work/four.log" 2>&1
check four_ranks $? "$(tail -40 "$work/four.log")"
AGPT_CUDA_DP_DIR="$work" "$bin" "--gtest_filter=$resume" >"$work/resume.log" 2>&1
check resumed_on_one_process $? "$(tail -20 "$work/resume.log")"
echo "cuda data parallel (emulated): $passed passed, $failed failed"
[[ $failed -eq 0 ]]
