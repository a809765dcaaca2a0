#pragma once
// Causal grouped-query attention, computed tile by tile with an online softmax so that memory
// stays linear in T (no (T,T) score matrix is ever stored).
//
// qkv (B,T,(H+2·KV)·hd): each row holds H query heads, then KV key heads, then KV value heads.
// Query head h reads key/value head h / (H/KV). Scores are s = q·k/√hd, masked to keys t' <= t.
// softcap c > 0 caps them before the softmax: s -> c·tanh(s/c) (Gemma 2's attention-logit
// soft-capping); 0 leaves them as they are.
namespace agpt::cpu {

// out (B,T,H·hd); lse (B,H,T) = log-sum-exp of each query's scaled scores, kept for backward.
template <typename T>
void attention_forward(T* out, T* lse, const T* qkv, int B, int T_len, int H, int KV, int hd,
                       T softcap = T(0));

// Accumulates dqkv (B,T,(H+2·KV)·hd) from dout (B,T,H·hd), recomputing the probabilities from
// qkv and lse. out is the forward output (for the rowsum(dout ⊙ out) term). softcap must be
// the forward's.
template <typename T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* out, const T* lse, int B,
                        int T_len, int H, int KV, int hd, T softcap = T(0));

}  // namespace agpt::cpu
