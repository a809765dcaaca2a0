#pragma once
// Newton–Schulz orthogonalisation on the GPU, kernels/cpu/newton_schulz.h's function: X = G /
// max(‖G‖_F, eps) (on Gᵀ when G is tall), then `steps` iterations of A = X·Xᵀ; B = b·A + c·A·A;
// X = a·X + B·X through cuBLASLt (gemm.h, fp32 accumulation). fp32: every GEMM in fp32.
// bf16: as torch and the CPU's bf16 emulation run it — the input, the norm, the scaled matrix and
// every GEMM result rounded to bf16 (bf16 GEMMs). The norm is summed in double over fixed blocks
// and then the blocks in order (deterministic), and the scale stays on the device: nothing here
// synchronises.
#include <cstddef>

#include "kernels/cpu/newton_schulz.h"
#include "kernels/cuda/device.h"

namespace agpt::cuda {

// Bytes of scratch newton_schulz needs for a (rows, cols) matrix.
std::size_t newton_schulz_scratch_bytes(int rows, int cols, bool bf16_gemms);

// out (rows, cols, fp32) = NS(G (rows, cols, fp32)); out may alias G. Runs on blas.stream().
void newton_schulz(Blas& blas, const float* G, float* out, int rows, int cols,
                   const cpu::NsCoefficients& coef, int steps, double eps, bool bf16_gemms,
                   void* scratch);

}  // namespace agpt::cuda
