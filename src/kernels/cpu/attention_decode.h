#pragma once
// Attention of a few new queries against a key/value cache: the decode step of generation.
// attention_forward (attention.h) attends T queries to the T keys of one sequence; here the
// keys and values of earlier positions were kept from previous calls, so M new queries cost
// O(M · L) instead of recomputing every earlier query.
//
// q (M rows of stride q_stride): H query heads of hd at the start of each row, as in a fused
// qkv row. k, v (L rows of stride kv_stride): KV heads of hd each, position-major; the rows
// past+0 .. past+M-1 already hold the new tokens' (rotated) keys and values. Query m sits at
// position past + m and attends keys 0 .. past + m; query head h reads kv head h / (H/KV).
// Scores are q·k/√hd, soft-capped to c·tanh(s/c) when softcap c > 0, as in attention_forward.
namespace agpt::cpu {
// out (M, H·hd).
template <typename T>
void attention_decode(T* out, const T* q, int q_stride, const T* k, const T* v, int kv_stride,
                      int M, int past, int H, int KV, int hd, T softcap = T(0));
}  // namespace agpt::cpu
