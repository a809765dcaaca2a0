#pragma once
// Data parallelism over the flat gradient buffer.
#include <cstddef>

#include "dist/communicator.h"

namespace agpt {

// Sums `grads` (n floats) over the ranks in buckets of at most `bucket_floats`, from the end of
// the buffer backward (the order in which backward finishes the gradients). Returns the number
// of buckets. Each rank's gradients must already carry the 1/global-tokens scale, so the sum is
// the gradient of the global mean loss.
int all_reduce_gradients(Communicator& comm, float* grads, std::size_t n,
                         std::size_t bucket_floats);

}  // namespace agpt
