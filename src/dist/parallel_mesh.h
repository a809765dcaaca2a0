#pragma once
// The job's rank mesh DP × TP × EP ([parallelism], docs/distributed.md), resolved against the
// world size before any work starts.
#include <string>

#include "model/model_args.h"
#include "train/config.h"

namespace agpt {

struct ParallelMesh {
    int world = 1;
    int data_parallel = 1;
    int tensor_parallel = 1;
    int expert_parallel = 1;
    int zero = 0;
    // Ranks are laid out data-parallel outermost, tensor-parallel innermost (as torchtitan's
    // mesh ["dp", "ep", "tp"]): rank = (dp · EP + ep) · TP + tp. Expert-parallel ranks read
    // different data (EP is carved out of the data ranks, as DeepSeek and torchtitan do), so
    // the data ranks are DP × EP and the TP ranks of one data rank read the same batch.
    int data_ranks() const { return data_parallel * expert_parallel; }
    int data_rank(int rank) const { return rank / tensor_parallel; }
    int data_parallel_rank(int rank) const { return rank / (tensor_parallel * expert_parallel); }
    // Position on the tensor-parallel axis (the innermost with EP = 1): the TP ranks of one
    // data-parallel replica are neighbours, rank = dp_index · TP + tp_index.
    int tensor_parallel_rank(int rank) const { return rank % tensor_parallel; }
    int expert_parallel_rank(int rank) const { return rank / tensor_parallel % expert_parallel; }
    std::string describe() const;  // "DP 2 × TP 1 × EP 1 = 2 ranks, ZeRO-0"
};

// Infers data_parallel_degree = -1 from the world size and refuses, with the numbers named, a
// world size that is not the product of the degrees, attention heads (or KV heads) not
// divisible by TP, expert parallelism on a model without experts or with routed experts not
// divisible by EP, a global batch that the data ranks cannot split evenly, what tensor
// parallelism does not cover (another model family, MLA/MoE, an FFN width not divisible by TP,
// matrix optimizers, ZeRO-1) and combinations this build does not implement yet.
ParallelMesh resolve_parallel_mesh(const JobConfig& cfg, const ModelArgs& args, int world_size);

}  // namespace agpt
