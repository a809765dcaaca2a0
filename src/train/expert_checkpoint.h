#pragma once
// Checkpoints under expert parallelism hold full tensors, so that a run resumes on any number of
// expert-parallel ranks: the routed-expert shards of every rank are gathered into a model (and
// optimizer) of the full shape before rank 0 writes it, and a loaded full model is sliced back.
// A shard is rank r's slice [r·n, (r+1)·n) of the full tensor's values (whole experts along
// dim 0); optimizer state tensors match by name and are sharded where their size is the full
// one's divided by the ranks (elementwise state of an expert shard).
//
// comm is one expert-parallel group (its rank r holds slice r). Intended use (every rank of the
// group calls both; under DP × EP the first replica's group gathers for rank 0's save):
//   gather_expert_shards(comm, model, opt, full_model, full_opt, is_shard);  // then rank 0 saves
//   checkpoints.load(step, full_model, full_opt);
//   scatter_expert_shards(comm, full_model, full_opt, model, opt, is_shard);
#include <functional>

#include "dist/communicator.h"
#include "model/language_model.h"
#include "optim/optimizer.h"

namespace agpt {

using ShardPredicate = std::function<bool(const ParamView&)>;

// full (and full_opt, when both optimizers are given) receive sharded's values, expert shards
// gathered over comm's ranks.
void gather_expert_shards(Communicator& comm, LanguageModel& sharded, Optimizer* sharded_opt,
                          LanguageModel& full, Optimizer* full_opt, const ShardPredicate& is_shard);

// sharded (and sharded_opt) take full's values, each expert shard its rank's slice.
void scatter_expert_shards(Communicator& comm, LanguageModel& full, Optimizer* full_opt,
                           LanguageModel& sharded, Optimizer* sharded_opt,
                           const ShardPredicate& is_shard);

}  // namespace agpt
