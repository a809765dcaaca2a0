#include "dist/data_parallel.h"

#include <algorithm>

#include "core/error.h"

namespace agpt {

int all_reduce_gradients(Communicator& comm, float* grads, std::size_t n,
                         std::size_t bucket_floats) {
    if (bucket_floats == 0) fail("gradient all-reduce: bucket size must be positive");
    if (comm.size() == 1) return 0;
    int buckets = 0;
    for (std::size_t end = n; end > 0; buckets++) {
        const std::size_t begin = end > bucket_floats ? end - bucket_floats : 0;
        comm.all_reduce(grads + begin, end - begin, ReduceOp::Sum);
        end = begin;
    }
    return buckets;
}

OverlappedGradReduce::OverlappedGradReduce(Communicator& comm, float* grads, std::size_t n,
                                           std::size_t bucket_floats)
    : comm_(comm), grads_(grads), n_(n), final_from_(n) {
    if (bucket_floats == 0) fail("gradient all-reduce: bucket size must be positive");
    if (comm.size() == 1) return;
    for (std::size_t end = n; end > 0;) {
        end = end > bucket_floats ? end - bucket_floats : 0;
        bucket_begin_.push_back(end);
    }
}

void OverlappedGradReduce::start_final_buckets() {
    for (; next_ < bucket_begin_.size() && bucket_begin_[next_] >= final_from_; next_++) {
        const std::size_t end = next_ == 0 ? n_ : bucket_begin_[next_ - 1];
        pending_.push_back(
            comm_.start_all_reduce(grads_ + bucket_begin_[next_], end - bucket_begin_[next_]));
    }
}

void OverlappedGradReduce::ready(std::size_t begin, std::size_t end) {
    if (end != final_from_ || begin > end)
        fail("gradient all-reduce: range [{}, {}) reported ready does not continue [{}, {})", begin,
             end, final_from_, n_);
    final_from_ = begin;
    const std::size_t before = next_;
    start_final_buckets();
    started_early_ += static_cast<int>(next_ - before);
    // MPI progresses a non-blocking collective only inside MPI calls.
    for (PendingReduce& p : pending_) comm_.test(p);
}

int OverlappedGradReduce::finish() {
    final_from_ = 0;
    start_final_buckets();
    for (PendingReduce& p : pending_) comm_.wait(p);
    return static_cast<int>(bucket_begin_.size());
}

}  // namespace agpt
