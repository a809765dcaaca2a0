#include "dist/communicator.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "dist/mpi_communicator.h"

namespace agpt {

namespace {

class SingleProcessCommunicator final : public Communicator {
  public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    std::string backend() const override { return "single"; }
    void all_reduce(float*, std::size_t, ReduceOp) override {}
    void all_reduce(double*, std::size_t, ReduceOp) override {}
    void reduce_scatter(const float* in, float* out, std::size_t count, ReduceOp) override {
        std::memmove(out, in, count * sizeof(float));
    }
    void all_gather(const float* in, float* out, std::size_t count) override {
        std::memmove(out, in, count * sizeof(float));
    }
    void all_to_all(const float* in, float* out, std::size_t count) override {
        std::memmove(out, in, count * sizeof(float));
    }
    void all_to_all(const int* in, int* out, std::size_t count) override {
        std::memmove(out, in, count * sizeof(int));
    }
    void all_to_all_v(const float* in, const int* send_counts, float* out,
                      const int* recv_counts) override {
        if (send_counts[0] != recv_counts[0])
            fail("all_to_all_v in a one-rank job sends {} values but receives {}", send_counts[0],
                 recv_counts[0]);
        std::memmove(out, in, static_cast<std::size_t>(send_counts[0]) * sizeof(float));
    }
    void broadcast(void*, std::size_t, int root) override {
        if (root != 0) fail("broadcast from rank {} in a one-rank job", root);
    }
    void barrier() override {}
    std::unique_ptr<Communicator> split(int, int) override {
        return std::make_unique<SingleProcessCommunicator>();
    }
    [[noreturn]] void abort(int exit_code) override { std::_Exit(exit_code); }
};

std::unique_ptr<Communicator>& world_slot() {
    static std::unique_ptr<Communicator> world;
    return world;
}

}  // namespace

std::vector<std::string> Communicator::gather_bytes(const std::string& mine, int root) {
    std::vector<std::string> out;
    if (rank() == root) out.resize(static_cast<std::size_t>(size()));
    for (int r = 0; r < size(); r++) {
        uint64_t bytes = r == rank() ? mine.size() : 0;
        broadcast(&bytes, sizeof bytes, r);
        std::string data = r == rank() ? mine : std::string(bytes, '\0');
        broadcast(data.data(), data.size(), r);
        if (rank() == root) out[static_cast<std::size_t>(r)] = std::move(data);
    }
    return out;
}

PendingReduce Communicator::start_all_reduce(float* data, std::size_t n) {
    all_reduce(data, n, ReduceOp::Sum);
    return {};
}

bool Communicator::test(PendingReduce& pending) {
    return pending.done();
}

void Communicator::wait(PendingReduce&) {}

std::unique_ptr<Communicator> make_single_process_communicator() {
    return std::make_unique<SingleProcessCommunicator>();
}

bool launched_by_mpi() {
    for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"})
        if (std::getenv(var)) return true;
    return false;
}

Communicator& world_communicator() {
    auto& world = world_slot();
    if (!world) {
        if (launched_by_mpi()) {
            if (!mpi_available())
                fail(
                    "started by an MPI launcher (rank variables in the environment) but this "
                    "agpt was built without MPI; install libopenmpi-dev and rebuild");
            world = make_mpi_world_communicator();
        } else {
            world = make_single_process_communicator();
        }
    }
    return *world;
}

Communicator* existing_world_communicator() {
    return world_slot().get();
}

void report_fatal_error(const char* what) {
    Communicator* world = existing_world_communicator();
    if (world == nullptr || world->size() == 1) {
        std::fprintf(stderr, "agpt: error: %s\n", what);
        return;
    }
    std::fprintf(stderr, "agpt: error (rank %d of %d): %s\n", world->rank(), world->size(), what);
    world->abort(1);
}

}  // namespace agpt
