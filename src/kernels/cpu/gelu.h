#pragma once
// GELU with the tanh approximation (GPT-2's, PyTorch's gelu(approximate="tanh")):
//   out = 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))).
// Elementwise over n values; tanh is computed from the vectorisable exp of vec_math.h.
namespace agpt::cpu {

// inp (n) -> out (n).
template <typename T>
void gelu_forward(T* out, const T* inp, long n);

// Accumulates dinp (n) += gelu'(inp) ⊙ dout.
template <typename T>
void gelu_backward(T* dinp, const T* dout, const T* inp, long n);

}  // namespace agpt::cpu
