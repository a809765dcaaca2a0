#pragma once
// Data parallelism over the flat gradient buffer.
#include <cstddef>
#include <vector>

#include "dist/communicator.h"

namespace agpt {

// Sums `grads` (n floats) over the ranks in buckets of at most `bucket_floats`, from the end of
// the buffer backward (the order in which backward finishes the gradients). Returns the number
// of buckets. Each rank's gradients must already carry the 1/global-tokens scale, so the sum is
// the gradient of the global mean loss.
int all_reduce_gradients(Communicator& comm, float* grads, std::size_t n,
                         std::size_t bucket_floats);

// all_reduce_gradients overlapped with backward: the same buckets, each started (non-blocking)
// as soon as backward has finished it, so the same sums. Feed it the model's grads-ready reports
// (LanguageModel::set_grads_ready) during the last micro-batch's backward, then finish().
//   OverlappedGradReduce reduce(comm, grads, n, bucket_floats);
//   model.set_grads_ready([&](std::size_t b, std::size_t e) { reduce.ready(b, e); });
//   model.forward_backward(...);
//   model.set_grads_ready({});
//   reduce.finish();
class OverlappedGradReduce {
  public:
    OverlappedGradReduce(Communicator& comm, float* grads, std::size_t n,
                         std::size_t bucket_floats);
    OverlappedGradReduce(const OverlappedGradReduce&) = delete;
    OverlappedGradReduce& operator=(const OverlappedGradReduce&) = delete;
    // [begin, end) is final: it must continue the reports so far downwards (end = the previous
    // begin). Starts every bucket now wholly final and lets the ones in flight progress.
    void ready(std::size_t begin, std::size_t end);
    // Starts what is left and waits for every bucket. Returns the number of buckets.
    int finish();
    // Buckets started before finish() (while backward was still running).
    int started_early() const { return started_early_; }

  private:
    void start_final_buckets();
    Communicator& comm_;
    float* grads_;
    std::size_t n_;
    std::vector<std::size_t> bucket_begin_;  // bucket i covers [bucket_begin_[i], its end)
    std::vector<PendingReduce> pending_;
    std::size_t final_from_;  // [final_from_, n) is final
    std::size_t next_ = 0;    // the next bucket to start
    int started_early_ = 0;
};

}  // namespace agpt
