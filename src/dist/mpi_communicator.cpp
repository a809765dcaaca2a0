#include "dist/mpi_communicator.h"

#include "core/error.h"

#ifdef AGPT_HAVE_MPI
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>
#endif

namespace agpt {

#ifdef AGPT_HAVE_MPI

namespace {

MPI_Op mpi_op(ReduceOp op) {
    switch (op) {
        case ReduceOp::Sum:
        case ReduceOp::Avg:
            return MPI_SUM;
        case ReduceOp::Min:
            return MPI_MIN;
        case ReduceOp::Max:
            return MPI_MAX;
    }
    return MPI_SUM;
}

void check(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fail("MPI {} failed: {}", what, std::string(msg, static_cast<std::size_t>(len)));
}

// MPI counts are int: large buffers go in pieces of at most 2^30 elements.
constexpr std::size_t kMaxChunk = std::size_t{1} << 30;

template <typename T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
    return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
    return MPI_DOUBLE;
}

class MpiCommunicator final : public Communicator {
  public:
    // MPI_COMM_WORLD: initialises MPI, and finalizes it when destroyed.
    MpiCommunicator() : comm_(MPI_COMM_WORLD), world_(true) {
        int initialized = 0;
        MPI_Initialized(&initialized);
        if (!initialized) {
            int provided = 0;
            check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "init");
        }
        MPI_Comm_rank(comm_, &rank_);
        MPI_Comm_size(comm_, &size_);
    }
    // A sub-group (split): freed, not finalized. It must not outlive the world communicator.
    explicit MpiCommunicator(MPI_Comm comm) : comm_(comm), world_(false) {
        MPI_Comm_rank(comm_, &rank_);
        MPI_Comm_size(comm_, &size_);
    }
    ~MpiCommunicator() override {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (finalized) return;
        if (world_)
            MPI_Finalize();
        else
            MPI_Comm_free(&comm_);
    }
    MpiCommunicator(const MpiCommunicator&) = delete;
    MpiCommunicator& operator=(const MpiCommunicator&) = delete;
    int rank() const override { return rank_; }
    int size() const override { return size_; }
    std::string backend() const override { return "mpi"; }

    void all_reduce(float* data, std::size_t n, ReduceOp op) override {
        reduce_in_place(data, n, op);
    }
    void all_reduce(double* data, std::size_t n, ReduceOp op) override {
        reduce_in_place(data, n, op);
    }
    void all_to_all(const int* in, int* out, std::size_t count) override {
        if (count > kMaxChunk) fail("all_to_all of {} values per rank is too large", count);
        check(MPI_Alltoall(in, static_cast<int>(count), MPI_INT, out, static_cast<int>(count),
                           MPI_INT, comm_),
              "all_to_all");
    }
    void all_to_all_v(const float* in, const int* send_counts, float* out,
                      const int* recv_counts) override {
        std::vector<int> send_at(size_), recv_at(size_);
        long send_total = 0, recv_total = 0;
        for (int r = 0; r < size_; r++) {
            send_at[r] = static_cast<int>(send_total);
            recv_at[r] = static_cast<int>(recv_total);
            send_total += send_counts[r];
            recv_total += recv_counts[r];
        }
        if (send_total > static_cast<long>(kMaxChunk) || recv_total > static_cast<long>(kMaxChunk))
            fail("all_to_all_v of {} values sent and {} received is too large", send_total,
                 recv_total);
        check(MPI_Alltoallv(in, send_counts, send_at.data(), MPI_FLOAT, out, recv_counts,
                            recv_at.data(), MPI_FLOAT, comm_),
              "all_to_all_v");
    }
    void reduce_scatter(const float* in, float* out, std::size_t count, ReduceOp op) override {
        if (count > kMaxChunk) fail("reduce_scatter of {} values per rank is too large", count);
        check(MPI_Reduce_scatter_block(in, out, static_cast<int>(count), MPI_FLOAT, mpi_op(op),
                                       comm_),
              "reduce_scatter");
        if (op == ReduceOp::Avg) scale(out, count);
    }
    void all_gather(const float* in, float* out, std::size_t count) override {
        if (count > kMaxChunk) fail("all_gather of {} values per rank is too large", count);
        check(MPI_Allgather(in, static_cast<int>(count), MPI_FLOAT, out, static_cast<int>(count),
                            MPI_FLOAT, comm_),
              "all_gather");
    }
    void all_to_all(const float* in, float* out, std::size_t count) override {
        if (count > kMaxChunk) fail("all_to_all of {} values per rank is too large", count);
        check(MPI_Alltoall(in, static_cast<int>(count), MPI_FLOAT, out, static_cast<int>(count),
                           MPI_FLOAT, comm_),
              "all_to_all");
    }
    void broadcast(void* data, std::size_t bytes, int root) override {
        auto* p = static_cast<char*>(data);
        for (std::size_t done = 0; done < bytes; done += kMaxChunk) {
            const std::size_t n = std::min(kMaxChunk, bytes - done);
            check(MPI_Bcast(p + done, static_cast<int>(n), MPI_BYTE, root, comm_), "broadcast");
        }
    }
    std::vector<std::string> gather_bytes(const std::string& mine, int root) override {
        std::vector<std::string> out;
        if (rank_ != root) {
            const uint64_t bytes = mine.size();
            check(MPI_Send(&bytes, 1, MPI_UINT64_T, root, kGatherTag, comm_), "send");
            for (std::size_t done = 0; done < mine.size(); done += kMaxChunk)
                check(MPI_Send(mine.data() + done,
                               static_cast<int>(std::min(kMaxChunk, mine.size() - done)), MPI_BYTE,
                               root, kGatherTag, comm_),
                      "send");
            return out;
        }
        out.resize(static_cast<std::size_t>(size_));
        for (int r = 0; r < size_; r++) {
            std::string& data = out[static_cast<std::size_t>(r)];
            if (r == root) {
                data = mine;
                continue;
            }
            uint64_t bytes = 0;
            check(MPI_Recv(&bytes, 1, MPI_UINT64_T, r, kGatherTag, comm_, MPI_STATUS_IGNORE),
                  "receive");
            data.resize(bytes);
            for (std::size_t done = 0; done < data.size(); done += kMaxChunk)
                check(MPI_Recv(data.data() + done,
                               static_cast<int>(std::min(kMaxChunk, data.size() - done)), MPI_BYTE,
                               r, kGatherTag, comm_, MPI_STATUS_IGNORE),
                      "receive");
        }
        return out;
    }
    PendingReduce start_all_reduce(float* data, std::size_t n) override {
        std::vector<MPI_Request> requests;
        for (std::size_t done = 0; done < n; done += kMaxChunk) {
            const std::size_t m = std::min(kMaxChunk, n - done);
            requests.emplace_back();
            check(MPI_Iallreduce(MPI_IN_PLACE, data + done, static_cast<int>(m), MPI_FLOAT, MPI_SUM,
                                 comm_, &requests.back()),
                  "start all_reduce");
        }
        if (requests.empty()) return {};
        PendingReduce pending;
        pending.ticket = ++last_ticket_;
        in_flight_[pending.ticket] = std::move(requests);
        return pending;
    }
    bool test(PendingReduce& pending) override {
        if (pending.done()) return true;
        auto& requests = in_flight(pending);
        int flag = 0;
        check(MPI_Testall(static_cast<int>(requests.size()), requests.data(), &flag,
                          MPI_STATUSES_IGNORE),
              "test all_reduce");
        if (flag) finish(pending);
        return flag != 0;
    }
    void wait(PendingReduce& pending) override {
        if (pending.done()) return;
        auto& requests = in_flight(pending);
        check(MPI_Waitall(static_cast<int>(requests.size()), requests.data(), MPI_STATUSES_IGNORE),
              "wait all_reduce");
        finish(pending);
    }
    void barrier() override { check(MPI_Barrier(comm_), "barrier"); }
    std::unique_ptr<Communicator> split(int color, int key) override {
        MPI_Comm sub = MPI_COMM_NULL;
        check(MPI_Comm_split(comm_, color, key, &sub), "comm_split");
        return std::make_unique<MpiCommunicator>(sub);
    }
    [[noreturn]] void abort(int exit_code) override {
        std::fflush(stdout);
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, exit_code);  // the whole job, from any group
        std::_Exit(exit_code);
    }

  private:
    static constexpr int kGatherTag = 17;
    std::vector<MPI_Request>& in_flight(const PendingReduce& pending) {
        const auto it = in_flight_.find(pending.ticket);
        if (it == in_flight_.end()) fail("all_reduce ticket {} is not in flight", pending.ticket);
        return it->second;
    }
    void finish(PendingReduce& pending) {
        in_flight_.erase(pending.ticket);
        pending.ticket = 0;
    }
    template <typename T>
    void reduce_in_place(T* data, std::size_t n, ReduceOp op) {
        for (std::size_t done = 0; done < n; done += kMaxChunk) {
            const std::size_t m = std::min(kMaxChunk, n - done);
            check(MPI_Allreduce(MPI_IN_PLACE, data + done, static_cast<int>(m), mpi_type<T>(),
                                mpi_op(op), comm_),
                  "all_reduce");
        }
        if (op == ReduceOp::Avg) scale(data, n);
    }
    template <typename T>
    void scale(T* data, std::size_t n) const {
        const T inv = T(1) / static_cast<T>(size_);
        for (std::size_t i = 0; i < n; i++) data[i] *= inv;
    }
    MPI_Comm comm_;
    bool world_;
    int rank_ = 0, size_ = 1;
    std::int64_t last_ticket_ = 0;
    std::map<std::int64_t, std::vector<MPI_Request>> in_flight_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_world_communicator() {
    return std::make_unique<MpiCommunicator>();
}

bool mpi_available() {
    return true;
}

#else

std::unique_ptr<Communicator> make_mpi_world_communicator() {
    fail("this agpt was built without MPI; install libopenmpi-dev and rebuild");
}

bool mpi_available() {
    return false;
}

#endif

}  // namespace agpt
