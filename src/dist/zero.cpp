#include "dist/zero.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <utility>

#include "core/error.h"
#include "optim/grad_clip.h"

namespace agpt {

namespace {

class HostShardMemory final : public ShardMemory {
  public:
    float* allocate(std::size_t n) override { return blocks_.emplace_back(n, 0.0f).data(); }
    void copy(float* dst, const float* src, std::size_t n) override { std::copy_n(src, n, dst); }
    void fill_zero(float* p, std::size_t n) override { std::fill_n(p, n, 0.0f); }
    double norm(const float* g, std::size_t n) override { return global_grad_norm(g, n); }
    void clip_to_norm(float* g, std::size_t n, double norm, double max_norm) override {
        agpt::clip_to_norm(g, n, norm, max_norm);
    }

  private:
    std::vector<std::vector<float>> blocks_;
};

}  // namespace

std::unique_ptr<ShardMemory> make_host_shard_memory() {
    return std::make_unique<HostShardMemory>();
}

ZeroShard::ZeroShard(Communicator& comm, const std::vector<ParamView>& views, std::size_t total)
    : ZeroShard(comm, comm, views, total, make_host_shard_memory(),
                std::numeric_limits<std::size_t>::max()) {}

ZeroShard::ZeroShard(Communicator& comm, Communicator& host_comm,
                     const std::vector<ParamView>& views, std::size_t total,
                     std::unique_ptr<ShardMemory> memory, std::size_t buffer_floats)
    : comm_(comm), host_comm_(host_comm), memory_(std::move(memory)) {
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
    piece_ =
        std::min(block_, std::max<std::size_t>(1, buffer_floats / static_cast<std::size_t>(W)));
    padded_ = memory_->allocate(piece_ * static_cast<std::size_t>(W));
    mine_ = memory_->allocate(piece_);
}

std::size_t ZeroShard::part(int r, std::size_t at, std::size_t n) const {
    const std::size_t len = end(r) - begin(r);
    return len > at ? std::min(n, len - at) : 0;
}

// A block's tail past its rank's range holds whatever an earlier piece left there: summed or
// gathered with the rest, never copied out.
void ZeroShard::pack(const float* flat, std::size_t at, std::size_t n) {
    for (int r = 0; r < comm_.size(); r++)
        memory_->copy(padded_ + r * n, flat + begin(r) + at, part(r, at, n));
}

void ZeroShard::unpack_all(float* flat, std::size_t at, std::size_t n) {
    for (int r = 0; r < comm_.size(); r++)
        memory_->copy(flat + begin(r) + at, padded_ + r * n, part(r, at, n));
}

void ZeroShard::reduce_scatter_gradients(float* grads) {
    const int r = comm_.rank();
    for (std::size_t at = 0; at < block_; at += piece_) {
        const std::size_t n = std::min(piece_, block_ - at);
        pack(grads, at, n);
        comm_.reduce_scatter(padded_, mine_, n, ReduceOp::Sum);
        memory_->copy(grads + begin(r) + at, mine_, part(r, at, n));
    }
}

double ZeroShard::clip_owned(float* grads, double max_norm) {
    const int r = comm_.rank();
    const double own = memory_->norm(grads + begin(r), end(r) - begin(r));
    const double norm = std::sqrt(host_comm_.all_reduce_value(own * own, ReduceOp::Sum));
    memory_->clip_to_norm(grads + begin(r), end(r) - begin(r), norm, max_norm);
    return norm;
}

void ZeroShard::all_gather_parameters(float* params) {
    const int r = comm_.rank();
    for (std::size_t at = 0; at < block_; at += piece_) {
        const std::size_t n = std::min(piece_, block_ - at), own = part(r, at, n);
        memory_->copy(mine_, params + begin(r) + at, own);
        memory_->fill_zero(mine_ + own, n - own);
        comm_.all_gather(mine_, padded_, n);
        unpack_all(params, at, n);
    }
}

namespace {

// A shard's state as "name length, name, byte count, bytes" records (one process's memory
// layout: the bytes only ever travel between ranks of one job).
std::string serialize_state(Optimizer& opt) {
    std::string out;
    auto put = [&](const void* p, std::size_t n) { out.append(static_cast<const char*>(p), n); };
    for (const OptimStateTensor& t : opt.state_tensors()) {
        const uint64_t name_len = t.name.size(), bytes = t.nbytes();
        put(&name_len, sizeof name_len);
        put(t.name.data(), t.name.size());
        put(&bytes, sizeof bytes);
        put(t.data, bytes);
    }
    return out;
}

}  // namespace

void gather_optimizer_state(Communicator& comm, Optimizer& shard, Optimizer* full) {
    const std::vector<std::string> shards = comm.gather_bytes(serialize_state(shard), 0);
    if (comm.rank() != 0) return;
    if (full == nullptr) fail("gathering ZeRO-1 optimizer state: rank 0 has no full optimizer");
    std::map<std::string, OptimStateTensor> into;
    for (const OptimStateTensor& t : full->state_tensors()) into[t.name] = t;
    std::map<std::string, int> source;  // tensor -> the rank it came from
    for (int r = 0; r < comm.size(); r++) {
        const std::string& blob = shards[static_cast<std::size_t>(r)];
        std::size_t at = 0;
        auto take = [&](void* p, std::size_t n) {
            if (at + n > blob.size()) fail("ZeRO-1 optimizer state from rank {} is truncated", r);
            std::memcpy(p, blob.data() + at, n);
            at += n;
        };
        while (at < blob.size()) {
            uint64_t name_len = 0, bytes = 0;
            take(&name_len, sizeof name_len);
            std::string name(name_len, '\0');
            take(name.data(), name.size());
            take(&bytes, sizeof bytes);
            const auto it = into.find(name);
            if (it == into.end())
                fail(
                    "ZeRO-1 optimizer state: rank {} holds '{}', which {} over every parameter "
                    "does not have",
                    r, name, full->name());
            const OptimStateTensor& dst = it->second;
            if (bytes != dst.nbytes())
                fail("ZeRO-1 optimizer state: '{}' is {} bytes on rank {}, {} in the full state",
                     name, bytes, r, dst.nbytes());
            if (dst.shape.empty() && source.count(name)) {
                std::string value(bytes, '\0');
                take(value.data(), bytes);
                if (std::memcmp(value.data(), dst.data, bytes) != 0)
                    fail("ZeRO-1 optimizer state: scalar '{}' differs between rank {} and rank {}",
                         name, source[name], r);
                continue;
            }
            if (source.count(name))
                fail("ZeRO-1 optimizer state: '{}' is held by rank {} and rank {}", name,
                     source[name], r);
            take(dst.data, bytes);
            source[name] = r;
        }
    }
    for (const auto& [name, t] : into)
        if (!source.count(name)) fail("ZeRO-1 optimizer state: no rank holds '{}'", name);
}

void take_owned_state(Optimizer& full, Optimizer& shard) {
    std::map<std::string, SavedStateTensor> all;
    for (const OptimStateTensor& t : full.state_tensors()) all[t.name] = {t.dtype, t.shape, t.data};
    std::map<std::string, SavedStateTensor> owned;
    for (const OptimStateTensor& t : shard.state_tensors()) {
        const auto it = all.find(t.name);
        if (it == all.end())
            fail("ZeRO-1 optimizer state: the full state of {} has no '{}'", full.name(), t.name);
        owned.insert(*it);
    }
    shard.load_state(owned);
}

}  // namespace agpt
