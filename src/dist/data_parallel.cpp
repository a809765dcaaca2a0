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

}  // namespace agpt
