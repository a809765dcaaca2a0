#pragma once
// Which attention kernels a call runs and the stream scratch its backward takes, as arithmetic on
// the shape and the switches (no CUDA needed): attention_tc.cu dispatches on it, and `agpt plan`
// (tools/plan.cpp) counts the scratch on machines without a GPU. The tensor-core kernels also
// need 16-byte aligned pointers, which every model buffer is; other calls fall back to the plain
// kernels, which take no scratch.
#include <cstddef>

#include "kernels/cuda/switches.h"

namespace agpt::cuda {

enum class AttentionKernels {
    plain,        // fp32 FMAs (attention.cu): fp32 storage, other head sizes, or forced
    tensor_core,  // mma.sync (attention_tc.cu): bf16, head size 64, 128 or 192
    wide,         // forward only: 128-query tiles, two m-tiles per warp (bf16, hd 64)
    split,        // backward only: dQ from per-split partial sums (bf16, hd 64)
};

// The key tiles of the tensor-core backward's dK/dV kernels (4 warps × 16 keys).
constexpr int kAttentionKeyTile = 64;

inline bool attention_tensor_cores(int hd, bool bf16) {
    return bf16 && (hd == 64 || hd == 128 || hd == 192) && !env_is("AGPT_ATTN_KERNEL", "simple");
}

inline AttentionKernels attention_forward_kernels(int hd, bool bf16) {
    if (!attention_tensor_cores(hd, bf16)) return AttentionKernels::plain;
    return hd == 64 && env_is("AGPT_ATTN_FORWARD", "wide") ? AttentionKernels::wide
                                                           : AttentionKernels::tensor_core;
}

struct AttentionBackwardPlan {
    AttentionKernels kernels = AttentionKernels::plain;
    int dq_splits = 0;                 // split: the splits of each head's key-tile pairs
    std::size_t row_dot_bytes = 0;     // tensor_core and split: D = rowsum(dO∘O) per query row
    std::size_t dq_partial_bytes = 0;  // split: dQ's fp32 partial sums, dq_splits of them
    std::size_t scratch_bytes() const { return row_dot_bytes + dq_partial_bytes; }
};

// Splits of the key-tile pairs per (kv head, batch): doubled until ~768 blocks (two waves at three
// blocks per SM on 132 SMs) or one pair per block. The partials take splits × B·H·T·hd floats.
inline int attention_dq_splits(int key_tiles, int heads_by_batch) {
    const int pairs = (key_tiles + 1) / 2;
    int s = 1;
    while (s < pairs && s * heads_by_batch < 768) s *= 2;
    return s < pairs ? s : pairs;
}

inline AttentionBackwardPlan attention_backward_plan(int B, int T, int H, int KV, int hd,
                                                     bool bf16) {
    AttentionBackwardPlan p;
    if (!attention_tensor_cores(hd, bf16)) return p;
    const std::size_t rows = static_cast<std::size_t>(B) * T * H;
    p.kernels = AttentionKernels::tensor_core;
    p.row_dot_bytes = rows * sizeof(float);
    if (hd == 64 && env_is("AGPT_ATTN_BACKWARD", "split")) {
        p.kernels = AttentionKernels::split;
        p.dq_splits = attention_dq_splits((T + kAttentionKeyTile - 1) / kAttentionKeyTile, KV * B);
        p.dq_partial_bytes = static_cast<std::size_t>(p.dq_splits) * rows * hd * sizeof(float);
    }
    return p;
}

}  // namespace agpt::cuda
