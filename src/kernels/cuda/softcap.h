#pragma once
// Logit soft-capping c·tanh(x/c) on returned logits, as kernels/cpu/softcap.h's softcap_forward.
// (Inside attention and the fused LM head the cap is applied by those kernels themselves.)
#include "kernels/cuda/device.h"

namespace agpt::cuda {

// In place: x[i] = cap·tanh(x[i]/cap) for i < n. cap <= 0: no-op (nothing is launched).
void softcap_forward(float* x, long n, float cap, cudaStream_t stream = nullptr);

}  // namespace agpt::cuda
