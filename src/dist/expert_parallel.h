#pragma once
// The flat gradient buffer under expert parallelism: replicated tensors (the same parameter on
// every rank, its gradient summed over the ranks) and this rank's shards of the routed experts,
// whose gradients hold its expert-parallel group's tokens (the dispatch brought every group
// rank's rows for them here); with several data-parallel replicas they are summed over the
// replicas' ranks holding the same experts.
#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

#include "dist/communicator.h"
#include "model/language_model.h"

namespace agpt {

// (offset, count) into the flat buffer, adjacent views merged, in buffer order.
using GradientRanges = std::vector<std::pair<std::size_t, std::size_t>>;

struct ShardedRanges {
    GradientRanges replicated, sharded;
};

ShardedRanges sharded_ranges(const std::vector<ParamView>& views,
                             const std::function<bool(const ParamView&)>& is_shard);

// Sums the given ranges over comm's ranks (all_reduce_gradients per range): the replicated
// ranges over every rank, the shards over the ranks holding the same experts (DP × EP).
void all_reduce_gradient_ranges(Communicator& comm, float* grads, const GradientRanges& ranges,
                                std::size_t bucket_floats);

// clip_grad_norm over the whole model: replicated tensors counted once, the shards of comm's
// ranks summed (comm holds each expert once: one expert-parallel group). Returns the norm before
// clipping (the same on every rank of comm).
double clip_sharded_grad_norm(Communicator& comm, float* grads, const ShardedRanges& r,
                              double max_norm);

}  // namespace agpt
