#include "dist/zero.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "optim/grad_clip.h"

namespace agpt {

ZeroShard::ZeroShard(Communicator& comm, const std::vector<ParamView>& views, std::size_t total)
    : comm_(comm) {
    const int W = comm.size();
    std::vector<ParamView> sorted = views;
    std::sort(sorted.begin(), sorted.end(),
              [](const ParamView& a, const ParamView& b) { return a.offset < b.offset; });
    bounds_.assign(static_cast<std::size_t>(W) + 1, total);
    bounds_[0] = 0;
    // A parameter belongs to the rank whose equal share holds its middle: ranges stay contiguous
    // and balanced up to one parameter.
    int previous = 0;
    for (const ParamView& v : sorted) {
        const double middle = static_cast<double>(v.offset) + 0.5 * static_cast<double>(v.numel());
        const int owner =
            std::min(W - 1, static_cast<int>(middle * W / static_cast<double>(total)));
        for (int r = previous + 1; r <= owner; r++) bounds_[r] = v.offset;
        previous = std::max(previous, owner);
        if (owner == comm.rank()) owned_.push_back(v);
    }
    for (int r = previous + 1; r < W; r++) bounds_[r] = total;
    for (int r = 0; r < W; r++) block_ = std::max(block_, bounds_[r + 1] - bounds_[r]);
    padded_.assign(block_ * W, 0.0f);
    mine_.assign(block_, 0.0f);
}

void ZeroShard::pack(const float* flat) {
    for (int r = 0; r < comm_.size(); r++)
        std::copy(flat + begin(r), flat + end(r), padded_.begin() + static_cast<long>(r * block_));
}

void ZeroShard::unpack_all(float* flat) {
    for (int r = 0; r < comm_.size(); r++)
        std::copy_n(padded_.begin() + static_cast<long>(r * block_), end(r) - begin(r),
                    flat + begin(r));
}

void ZeroShard::reduce_scatter_gradients(float* grads) {
    pack(grads);
    comm_.reduce_scatter(padded_.data(), mine_.data(), block_, ReduceOp::Sum);
    const int r = comm_.rank();
    std::copy_n(mine_.begin(), end(r) - begin(r), grads + begin(r));
}

double ZeroShard::clip_owned(float* grads, double max_norm) {
    const int r = comm_.rank();
    const double own = global_grad_norm(grads + begin(r), end(r) - begin(r));
    const double norm = std::sqrt(comm_.all_reduce_value(own * own, ReduceOp::Sum));
    if (!(max_norm > 0.0)) return norm;
    const double coef = max_norm / (norm + 1e-6);
    if (coef >= 1.0) return norm;
    const float c = static_cast<float>(coef);
    for (std::size_t i = begin(r); i < end(r); i++) grads[i] *= c;
    return norm;
}

void ZeroShard::all_gather_parameters(float* params) {
    const int r = comm_.rank();
    std::fill(mine_.begin(), mine_.end(), 0.0f);
    std::copy(params + begin(r), params + end(r), mine_.begin());
    comm_.all_gather(mine_.data(), padded_.data(), block_);
    unpack_all(params);
}

}  // namespace agpt
