#pragma once
#include <cstddef>

#include "kernels/cpu/adamw.h"
#include "kernels/cuda/device.h"
// One AdamW step on the GPU over a flat fp32 slice, with the arithmetic of kernels/cpu/adamw.h
// (torch.optim.AdamW's: decoupled weight decay first, bias corrections, eps after the square
// root; IEEE-rounded operations, no contraction except the lerp's explicit fma). Master
// weights, gradients and both moments are fp32.
namespace agpt::cuda {

using AdamWStep = cpu::AdamWStep;

// param, grad, m, v (n, fp32). When param_bf16 is not null it also receives the updated
// parameters rounded to bf16 (the compute copy of bf16 training).
void adamw_update(float* param, const float* grad, float* m, float* v, std::size_t n,
                  const AdamWStep& s, bf16* param_bf16 = nullptr, cudaStream_t stream = nullptr);

}  // namespace agpt::cuda
