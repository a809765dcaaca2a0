#pragma once
// Multi-head latent attention's head packing on the GPU (model/mla.h): MLA's heads go through the
// causal attention kernel (attention.h) at head size HP = max(qk_nope + qk_rope, v_head), in the
// fused (N, 3·H·HP) layout it reads, with zero padding, which leaves the output exact. These ops
// build that layout and take it apart, as model/mla.cpp's loops do on the CPU.
#include "kernels/cuda/device.h"

namespace agpt::cuda {

struct MlaHeads {
    int n_heads = 0, nope = 0, rope = 0, v = 0, padded = 0;  // padded: HP
};

// qkv (N, 3·H·HP): q heads = q_scale · q (N, H·(nope+rope)); k heads = [k_nope_h | k_pe] from
// kv (N, H·(nope+v)) and k_pe (N, rope), shared by the heads; v heads from kv; zeros elsewhere.
template <typename T>
void mla_pack_qkv(T* qkv, const T* q, const T* kv, const T* k_pe, const MlaHeads& m, int N,
                  float q_scale, cudaStream_t stream = nullptr);
// The backward, overwriting dq (N, H·(nope+rope)), dkv (N, H·(nope+v)) and dk_pe (N, rope; the
// sum over the heads, in head order) from dqkv.
template <typename T>
void mla_unpack_qkv(T* dq, T* dkv, T* dk_pe, const T* dqkv, const MlaHeads& m, int N, float q_scale,
                    cudaStream_t stream = nullptr);

// o (N, H·v) = the first v columns of each head of att (N, H·HP).
template <typename T>
void mla_unpad_heads(T* o, const T* att, const MlaHeads& m, int N, cudaStream_t stream = nullptr);
// The backward, overwriting datt (N, H·HP) with do in the first v columns, zeros after.
template <typename T>
void mla_pad_heads(T* datt, const T* d_o, const MlaHeads& m, int N, cudaStream_t stream = nullptr);

}  // namespace agpt::cuda
