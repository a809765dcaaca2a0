#pragma once
// ReLU² (Primer, So et al. 2021; modded-nanogpt): out = relu(h)² = max(h, 0)², the activation
// of the two-matrix ReLU² FFN w2(relu(w1 x)²). h (N, F) is w1's output.
namespace agpt::cpu {

// h (N,F) -> out (N,F).
template <typename T>
void relu2_forward(T* out, const T* h, int N, int F);

// Accumulates dh (N,F) += dout · 2·max(h, 0).
template <typename T>
void relu2_backward(T* dh, const T* dout, const T* h, int N, int F);

}  // namespace agpt::cpu
