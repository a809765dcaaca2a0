#pragma once
// SwiGLU gate: out = silu(h1) ⊙ h3 with h1 and h3 side by side in one row, as the fused
// w1|w3 projection produces them: h13 (N, 2F) holds h1 in columns [0,F) and h3 in [F,2F).
namespace agpt::cpu {

template <typename T>
void swiglu_forward(T* out, const T* h13, int N, int F);

// Accumulates dh13 (N, 2F).
template <typename T>
void swiglu_backward(T* dh13, const T* dout, const T* h13, int N, int F);

}  // namespace agpt::cpu
