#include "dist/expert_parallel.h"

#include <algorithm>
#include <cmath>

#include "dist/data_parallel.h"
#include "optim/grad_clip.h"

namespace agpt {

ShardedRanges sharded_ranges(const std::vector<ParamView>& views,
                             const std::function<bool(const ParamView&)>& is_shard) {
    std::vector<const ParamView*> ordered;
    for (const auto& v : views) ordered.push_back(&v);
    std::sort(ordered.begin(), ordered.end(),
              [](const ParamView* a, const ParamView* b) { return a->offset < b->offset; });
    ShardedRanges r;
    for (const ParamView* v : ordered) {
        auto& list = is_shard(*v) ? r.sharded : r.replicated;
        if (!list.empty() && list.back().first + list.back().second == v->offset)
            list.back().second += v->numel();
        else
            list.emplace_back(v->offset, v->numel());
    }
    return r;
}

void all_reduce_gradient_ranges(Communicator& comm, float* grads, const GradientRanges& ranges,
                                std::size_t bucket_floats) {
    // From the end backward, as all_reduce_gradients within a range.
    for (auto it = ranges.rbegin(); it != ranges.rend(); ++it)
        all_reduce_gradients(comm, grads + it->first, it->second, bucket_floats);
}

double clip_sharded_grad_norm(Communicator& comm, float* grads, const ShardedRanges& r,
                              double max_norm) {
    double replicated = 0, sharded = 0;
    for (const auto& [offset, count] : r.replicated) {
        const double n = global_grad_norm(grads + offset, count);
        replicated += n * n;
    }
    for (const auto& [offset, count] : r.sharded) {
        const double n = global_grad_norm(grads + offset, count);
        sharded += n * n;
    }
    sharded = comm.all_reduce_value(sharded, ReduceOp::Sum);
    const double norm = std::sqrt(replicated + sharded);
    if (!(max_norm > 0.0)) return norm;
    const double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return norm;
    const float c = static_cast<float>(coef);
    for (const auto& list : {r.replicated, r.sharded})
        for (const auto& [offset, count] : list)
            for (std::size_t i = 0; i < count; i++) grads[offset + i] *= c;
    return norm;
}

}  // namespace agpt
