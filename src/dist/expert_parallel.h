#pragma once
// The flat gradient buffer under expert parallelism: replicated tensors (the same parameter on
// every rank, its gradient summed over the ranks) and this rank's shards of the routed experts,
// whose gradients are complete already (the dispatch brought every rank's rows for them here).
#include <cstddef>
#include <functional>
#include <utility>
#include <vector>

#include "dist/communicator.h"
#include "model/language_model.h"

namespace agpt {

struct ShardedRanges {
    // (offset, count) into the flat buffer, adjacent views merged, in buffer order.
    std::vector<std::pair<std::size_t, std::size_t>> replicated, sharded;
};

ShardedRanges sharded_ranges(const std::vector<ParamView>& views,
                             const std::function<bool(const ParamView&)>& is_shard);

// Sums the replicated ranges over the ranks (all_reduce_gradients per range); shards stay.
void all_reduce_replicated_gradients(Communicator& comm, float* grads, const ShardedRanges& r,
                                     std::size_t bucket_floats);

// clip_grad_norm over the whole model: replicated tensors counted once, every rank's shards
// summed. Returns the norm before clipping (the same on every rank).
double clip_sharded_grad_norm(Communicator& comm, float* grads, const ShardedRanges& r,
                              double max_norm);

}  // namespace agpt
