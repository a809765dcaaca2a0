#pragma once
#include <cstdint>
// The LM head fused with softmax cross-entropy, chunked over tokens so that only
// (chunk, V) logits exist at any time, whatever the vocabulary size.
namespace agpt::cpu {

// x (N,C) final hidden states, weight (V,C) the head, targets (N) in [0,V) or -1 to ignore.
// Returns the sum of -log p(target) over counted tokens. When dx/dweight are not null, it also
// accumulates the gradient of grad_scale · (that sum): dx (N,C) and dweight (V,C).
// scratch must hold chunk·V elements. softcap c > 0 caps the logits z = x·weightᵀ to
// c·tanh(z/c) before the softmax (final-logit soft-capping); 0 leaves them as they are.
// row_scale (N), when not null, weights each row's term: the gradient is that of
// grad_scale · Σ row_scale[i]·loss[i] (policy-gradient objectives weight tokens this way).
// row_loss (N), when not null, receives each row's loss (0 for ignored rows).
template <typename T>
double lm_head_cross_entropy(T* dx, T* dweight, const T* x, const T* weight, const int32_t* targets,
                             int N, int C, int V, T grad_scale, T* scratch, int chunk,
                             T softcap = T(0), const T* row_scale = nullptr,
                             double* row_loss = nullptr);

// Scratch elements lm_head_cross_entropy needs for a given chunk.
inline long lm_head_scratch_size(int chunk, int V) {
    return static_cast<long>(chunk) * V;
}

}  // namespace agpt::cpu
