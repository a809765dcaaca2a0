#pragma once
// Megatron-style tensor parallelism of the dense agpt transformer (docs/distributed.md):
// column-parallel wq, wk, wv (heads), w1, w3 (FFN rows); row-parallel wo, w2 (their input
// columns); vocabulary-parallel tok_embeddings and output (V rows in contiguous ranges);
// norms replicated. A rank's flat parameter buffer holds only its shards, under the usual view
// names with local shapes; ShardSpec says where each sits in the full tensor, for initialising
// (same values as one rank), checkpoints (always full tensors) and tests.
#include <cstdint>
#include <utility>
#include <vector>

#include "dist/communicator.h"
#include "model/language_model.h"

namespace agpt {

// One rank's place in its tensor-parallel group. degree 1 (the default): no tensor parallelism,
// and group may be null.
struct TensorParallel {
    int rank = 0;
    int degree = 1;
    Communicator* group = nullptr;
    bool active() const { return degree > 1; }
};

// [first, first + rows) of a V-row table that rank r of n holds: contiguous ranges, the first
// V mod n of them one row longer.
std::pair<int, int> vocab_range(int V, int rank, int n);

// Where a view's local tensor sits in the full (rows, cols) tensor: all of it (replicated), the
// rows [first, first + count), or the columns [first, first + count). 1-D tensors have cols 1.
struct ShardSpec {
    enum class Split { replicated, rows, columns };
    Split split = Split::replicated;
    int rows = 0, cols = 1;  // the full tensor
    int first = 0, count = 0;
    std::size_t full_numel() const { return static_cast<std::size_t>(rows) * cols; }
    std::size_t local_numel() const;
    std::vector<int> full_shape(const std::vector<int>& local_shape) const;
};

// local <- this rank's part of full.
void take_shard(const ShardSpec& s, const float* full, float* local);
// full <- every rank's part (full on every rank). Collective over group: every rank calls it
// with the same view, in the same order.
void gather_shard(const ShardSpec& s, const float* local, float* full, const TensorParallel& tp);

// The LM head and cross-entropy over a vocabulary split between the TP group: weight holds rows
// [vocab_first, vocab_first + vocab_rows) of the (V, C) head. Each rank computes its logits;
// the row max, Σexp and the target logit are combined over the group with all-reduces (two per
// chunk of tokens), so the loss equals one rank's lm_head_cross_entropy up to rounding. Same
// arguments and result as that kernel otherwise (softcap before the softmax, targets of -1
// ignored, row_scale, row_loss), except that dx, when not null, is overwritten with the full
// gradient (summed over the group) rather than accumulated. scratch: chunk · vocab_rows floats.
// chunk must be the same on every rank.
double vocab_parallel_cross_entropy(float* dx, float* dweight, const float* x, const float* weight,
                                    const int32_t* targets, int N, int C, int vocab_first,
                                    int vocab_rows, float grad_scale, float* scratch, int chunk,
                                    float softcap, const float* row_scale, double* row_loss,
                                    const TensorParallel& tp);

// The full (N, V) logits from each rank's (N, vocab_rows) columns: out (N, V) on every rank.
void gather_vocab_columns(const float* local, float* out, int N, int V, const TensorParallel& tp);

// clip_grad_norm for one TP rank's gradient buffer: the norm is that of the full model's
// gradient (replicated tensors, whose gradients are equal on every rank, counted once; shards
// summed over the group). Scales this rank's buffer; returns the norm before clipping.
double clip_tensor_parallel_grad_norm(float* grads, const std::vector<ParamView>& views,
                                      const std::vector<ShardSpec>& shards, double max_norm,
                                      const TensorParallel& tp);

}  // namespace agpt
