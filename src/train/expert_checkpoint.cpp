#include "train/expert_checkpoint.h"

#include <cstring>
#include <map>
#include <string>

#include "core/error.h"

namespace agpt {

namespace {

const ParamView& full_view(const LanguageModel& full, const std::string& name) {
    for (const auto& v : full.param_views())
        if (v.name == name) return v;
    fail("checkpoint: the full model has no parameter '{}'", name);
}

// Calls copy(sharded tensor, full tensor, is_shard) for every optimizer state tensor.
template <typename Copy>
void for_each_state(Communicator& comm, Optimizer& sharded, Optimizer& full, Copy copy) {
    std::map<std::string, OptimStateTensor> full_state;
    for (auto& t : full.state_tensors()) full_state[t.name] = t;
    for (const OptimStateTensor& s : sharded.state_tensors()) {
        const auto it = full_state.find(s.name);
        if (it == full_state.end())
            fail("checkpoint: the full optimizer has no state '{}'", s.name);
        const OptimStateTensor& f = it->second;
        const bool shard = s.numel() != f.numel();
        if (shard && (s.dtype != SafetensorsDtype::F32 ||
                      s.numel() * static_cast<std::size_t>(comm.size()) != f.numel()))
            fail("checkpoint: optimizer state '{}' has {} values here and {} in the full model",
                 s.name, s.numel(), f.numel());
        copy(s, f, shard);
    }
}

}  // namespace

void gather_expert_shards(Communicator& comm, LanguageModel& sharded, Optimizer* sharded_opt,
                          LanguageModel& full, Optimizer* full_opt,
                          const ShardPredicate& is_shard) {
    for (const auto& v : sharded.param_views()) {
        const float* src = sharded.params().data() + v.offset;
        float* dst = full.params().data() + full_view(full, v.name).offset;
        if (is_shard(v))
            comm.all_gather(src, dst, v.numel());
        else
            std::memcpy(dst, src, v.numel() * sizeof(float));
    }
    if (sharded_opt == nullptr || full_opt == nullptr) return;
    for_each_state(comm, *sharded_opt, *full_opt,
                   [&](const OptimStateTensor& s, const OptimStateTensor& f, bool shard) {
                       if (shard)
                           comm.all_gather(static_cast<const float*>(s.data),
                                           static_cast<float*>(f.data), s.numel());
                       else if (s.nbytes() > 0)
                           std::memcpy(f.data, s.data, s.nbytes());
                   });
}

void scatter_expert_shards(Communicator& comm, LanguageModel& full, Optimizer* full_opt,
                           LanguageModel& sharded, Optimizer* sharded_opt,
                           const ShardPredicate& is_shard) {
    for (const auto& v : sharded.param_views()) {
        const std::size_t first =
            is_shard(v) ? static_cast<std::size_t>(comm.rank()) * v.numel() : 0;
        std::memcpy(sharded.params().data() + v.offset,
                    full.params().data() + full_view(full, v.name).offset + first,
                    v.numel() * sizeof(float));
    }
    if (sharded_opt == nullptr || full_opt == nullptr) return;
    for_each_state(comm, *sharded_opt, *full_opt,
                   [&](const OptimStateTensor& s, const OptimStateTensor& f, bool shard) {
                       const std::size_t first = shard ? comm.rank() * s.nbytes() : 0;
                       if (s.nbytes() > 0)
                           std::memcpy(s.data, static_cast<const char*>(f.data) + first,
                                       s.nbytes());
                   });
}

}  // namespace agpt
