#pragma once
// ZeRO-1 over the data-parallel ranks: each rank owns a contiguous range of whole parameters of
// the flat buffers and keeps optimizer state for that range only. A step is
//   reduce-scatter of the gradients (each owner gets the sum of its range),
//   the global gradient norm (sum of the owners' squares) and clipping of the owned range,
//   the optimizer step on the owned parameters,
//   all-gather of the parameters (every rank gets every range back).
// Whole parameters (not equal slices) keep matrix optimizers such as Muon exact.
//
// The buffers live where the model's do: host memory by default, a GPU's on cuda
// (train/cuda_training.h's make_cuda_zero_shard), through the ShardMemory given.
#include <cstddef>
#include <memory>
#include <vector>

#include "dist/communicator.h"
#include "model/transformer.h"
#include "optim/optimizer.h"

namespace agpt {

// Where ZeroShard's flat buffers live and the few operations it runs on them.
class ShardMemory {
  public:
    virtual ~ShardMemory() = default;
    // n floats, zeroed, valid while this object lives.
    virtual float* allocate(std::size_t n) = 0;
    virtual void copy(float* dst, const float* src, std::size_t n) = 0;
    virtual void fill_zero(float* p, std::size_t n) = 0;
    // optim/grad_clip.h's global_grad_norm and clip_to_norm.
    virtual double norm(const float* g, std::size_t n) = 0;
    virtual void clip_to_norm(float* g, std::size_t n, double norm, double max_norm) = 0;
};

// Host memory (the CPU path).
std::unique_ptr<ShardMemory> make_host_shard_memory();

class ZeroShard {
  public:
    // views: the model's parameters, in buffer order, covering [0, total). Host buffers; comm
    // carries everything.
    ZeroShard(Communicator& comm, const std::vector<ParamView>& views, std::size_t total);
    // Buffers in `memory`, which comm's collectives read and write (NCCL for device memory);
    // host_comm, over the same ranks in the same order, sums the squared norm (one double). The
    // padded buffers hold at most max(buffer_floats, size()) floats: the ranges go through them
    // in pieces, one collective per piece (the host constructor: one piece, the whole ranges).
    ZeroShard(Communicator& comm, Communicator& host_comm, const std::vector<ParamView>& views,
              std::size_t total, std::unique_ptr<ShardMemory> memory, std::size_t buffer_floats);
    // The parameters this rank owns (and builds its optimizer over).
    const std::vector<ParamView>& owned_views() const { return owned_; }
    std::size_t begin(int rank) const { return bounds_[rank]; }
    std::size_t end(int rank) const { return bounds_[rank + 1]; }
    // grads: this rank's full gradient buffer. Afterwards the owned range holds the sum over
    // the ranks; the rest is left as it was and must not be read.
    void reduce_scatter_gradients(float* grads);
    // The L2 norm of the whole (reduced) gradient; scales the owned range as clip_grad_norm
    // would scale the whole buffer (max_norm <= 0: no clipping). Returns the norm.
    double clip_owned(float* grads, double max_norm);
    // params: every rank's owned range, from its owner, into every rank's buffer.
    void all_gather_parameters(float* params);

  private:
    // Floats [at, at + n) of each rank's range into / out of its block of n in padded_.
    void pack(const float* flat, std::size_t at, std::size_t n);
    void unpack_all(float* flat, std::size_t at, std::size_t n);
    // How many of [at, at + n) lie in rank r's range.
    std::size_t part(int r, std::size_t at, std::size_t n) const;
    Communicator& comm_;
    Communicator& host_comm_;
    std::unique_ptr<ShardMemory> memory_;
    std::vector<std::size_t> bounds_;  // size()+1 offsets
    std::vector<ParamView> owned_;
    std::size_t block_ = 0;    // the largest range
    std::size_t piece_ = 0;    // what of each range one collective moves (block_ at most)
    float* padded_ = nullptr;  // piece_ × size(), in memory_
    float* mine_ = nullptr;    // piece_
};

// Checkpoints of a ZeRO-1 run hold the full optimizer state, exactly as a ZeRO-0 run writes it,
// so that any number of ranks (and either ZeRO level) can resume from them.
//
// Collective: every rank sends its shard's state to rank 0, which copies it, by name, into
// `full` (rank 0: an optimizer of the same spec over every parameter; the other ranks pass
// nullptr). Scalars (step counts) must agree on every rank; every tensor of `full` must come
// from exactly one rank. Either failure is an Error naming the tensor.
void gather_optimizer_state(Communicator& comm, Optimizer& shard, Optimizer* full);
// The inverse on load: the shard takes its own tensors (by name) from the full state.
void take_owned_state(Optimizer& full, Optimizer& shard);

}  // namespace agpt
