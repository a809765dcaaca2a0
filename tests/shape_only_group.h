#pragma once
// A communicator that only has a shape, for building a rank's shards (tensor or expert
// parallelism) in one process without running a collective: every collective is a test failure.
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "dist/communicator.h"

namespace agpt {

// A group of `size` ranks as seen from `rank`.
class ShapeOnlyGroup final : public Communicator {
  public:
    ShapeOnlyGroup(int rank, int size) : rank_(rank), size_(size) {}
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    std::string backend() const override { return "shape-only"; }
    void all_reduce(float*, std::size_t, ReduceOp) override { unused(); }
    void all_reduce(double*, std::size_t, ReduceOp) override { unused(); }
    void reduce_scatter(const float*, float*, std::size_t, ReduceOp) override { unused(); }
    void all_gather(const float*, float*, std::size_t) override { unused(); }
    void all_to_all(const float*, float*, std::size_t) override { unused(); }
    void all_to_all(const int*, int*, std::size_t) override { unused(); }
    void all_to_all_v(const float*, const int*, float*, const int*) override { unused(); }
    void broadcast(void*, std::size_t, int) override { unused(); }
    void barrier() override { unused(); }
    std::unique_ptr<Communicator> split(int, int) override {
        unused();
        return nullptr;
    }
    [[noreturn]] void abort(int) override { std::abort(); }

  private:
    static void unused() { ADD_FAILURE() << "a collective on a shape-only group"; }
    int rank_, size_;
};

}  // namespace agpt
