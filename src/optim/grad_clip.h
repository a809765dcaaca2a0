#pragma once
#include <cstddef>
// Gradient-norm clipping over the flat gradient buffer, with torch.nn.utils.clip_grad_norm_'s
// semantics. The norm is summed in a fixed order, so it is bit-identical whatever the number of
// OpenMP threads.
namespace agpt {

// Elements per partial sum; the summation order depends on it, so changing it changes the bits.
inline constexpr std::size_t kGradNormBlock = 4096;

// L2 norm of g[0..n), accumulated in double.
double global_grad_norm(const float* g, std::size_t n);

// Scales g by max_norm / (norm + 1e-6) when that is below 1 and max_norm > 0; returns the norm
// before clipping. A non-finite norm scales by a non-finite coefficient, as torch does.
double clip_grad_norm(float* g, std::size_t n, double max_norm);

// clip_grad_norm's scaling of g for a gradient whose norm is `norm` (computed elsewhere: ZeRO-1's
// norm is summed over the ranks that each hold a part of the gradient).
void clip_to_norm(float* g, std::size_t n, double norm, double max_norm);

}  // namespace agpt
