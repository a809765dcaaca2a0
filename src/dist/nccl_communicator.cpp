#include "dist/nccl_communicator.h"

#include <cstdlib>
#include <vector>

#include "core/error.h"

#if defined(AGPT_HAVE_CUDA)
#include <map>

#include "kernels/cuda/device.h"
#include "kernels/cuda/nccl_loader.h"
#endif

namespace agpt {

int local_rank_from_env(int fallback) {
    for (const char* var :
         {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "PALS_LOCAL_RANKID", "MPI_LOCALRANKID"}) {
        const char* v = std::getenv(var);
        if (v == nullptr || *v == '\0') continue;
        char* end = nullptr;
        const long r = std::strtol(v, &end, 10);
        if (*end != '\0' || r < 0) fail("{} = {}: not a local rank (a number >= 0)", var, v);
        return static_cast<int>(r);
    }
    return fallback;
}

int device_for_local_rank(int local_rank, int device_count) {
    if (device_count <= 0) fail("no CUDA device is visible to choose one per rank from");
    return local_rank % device_count;
}

#if defined(AGPT_HAVE_CUDA)

int select_local_cuda_device(int world_rank) {
    int count = 0;
    AGPT_CUDA_CHECK(cudaGetDeviceCount(&count));
    const int device = device_for_local_rank(local_rank_from_env(world_rank), count);
    AGPT_CUDA_CHECK(cudaSetDevice(device));
    return device;
}

namespace {

using cuda::nccl;

ncclRedOp_t nccl_op(ReduceOp op) {
    switch (op) {
        case ReduceOp::Sum:
            return ncclSum;
        case ReduceOp::Avg:
            return ncclAvg;
        case ReduceOp::Min:
            return ncclMin;
        case ReduceOp::Max:
            return ncclMax;
    }
    return ncclSum;
}

class NcclCommunicator final : public Communicator {
  public:
    // The group of `host`'s ranks: rank 0's unique id goes to the others over host.
    NcclCommunicator(Communicator& host, cudaStream_t compute) : host_(host), compute_(compute) {
        ncclUniqueId id{};
        if (host.rank() == 0) AGPT_NCCL_CHECK(nccl().GetUniqueId(&id));
        host.broadcast(&id, sizeof id, 0);
        AGPT_NCCL_CHECK(nccl().CommInitRank(&comm_, host.size(), id, host.rank()));
        create_streams();
    }
    // A sub-group (split): owns its host sub-group and NCCL communicator.
    NcclCommunicator(std::unique_ptr<Communicator> host, ncclComm_t comm, cudaStream_t compute)
        : owned_host_(std::move(host)), host_(*owned_host_), compute_(compute), comm_(comm) {
        create_streams();
    }
    ~NcclCommunicator() override {
        // No throwing here: a failed synchronisation leaves nothing better to do than go on.
        cudaStreamSynchronize(comm_stream_);
        for (auto& [ticket, event] : in_flight_) cudaEventDestroy(event);
        for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
        cudaEventDestroy(compute_ready_);
        cudaStreamDestroy(comm_stream_);
        nccl().CommDestroy(comm_);
    }
    NcclCommunicator(const NcclCommunicator&) = delete;
    NcclCommunicator& operator=(const NcclCommunicator&) = delete;

    int rank() const override { return host_.rank(); }
    int size() const override { return host_.size(); }
    std::string backend() const override { return "nccl"; }

    void all_reduce(float* data, std::size_t n, ReduceOp op) override {
        AGPT_NCCL_CHECK(nccl().AllReduce(data, data, n, ncclFloat, nccl_op(op), comm_, compute_));
        synchronize();
    }
    void all_reduce(double* data, std::size_t n, ReduceOp op) override {
        AGPT_NCCL_CHECK(nccl().AllReduce(data, data, n, ncclDouble, nccl_op(op), comm_, compute_));
        synchronize();
    }
    void reduce_scatter(const float* in, float* out, std::size_t count, ReduceOp op) override {
        AGPT_NCCL_CHECK(
            nccl().ReduceScatter(in, out, count, ncclFloat, nccl_op(op), comm_, compute_));
        synchronize();
    }
    void all_gather(const float* in, float* out, std::size_t count) override {
        AGPT_NCCL_CHECK(nccl().AllGather(in, out, count, ncclFloat, comm_, compute_));
        synchronize();
    }
    // NCCL has no all-to-all: grouped point-to-point sends and receives, one pair per rank.
    void all_to_all(const float* in, float* out, std::size_t count) override {
        exchange(
            in, out, ncclFloat, [&](int) { return count; }, [&](int) { return count; });
    }
    void all_to_all(const int* in, int* out, std::size_t count) override {
        exchange(
            in, out, ncclInt32, [&](int) { return count; }, [&](int) { return count; });
    }
    void all_to_all_v(const float* in, const int* send_counts, float* out,
                      const int* recv_counts) override {
        exchange(
            in, out, ncclFloat, [&](int r) { return static_cast<std::size_t>(send_counts[r]); },
            [&](int r) { return static_cast<std::size_t>(recv_counts[r]); });
    }
    void broadcast(void* data, std::size_t bytes, int root) override {
        AGPT_NCCL_CHECK(nccl().Broadcast(data, data, bytes, ncclUint8, root, comm_, compute_));
        synchronize();
    }
    // Host strings by nature: through the host communicator.
    std::vector<std::string> gather_bytes(const std::string& mine, int root) override {
        return host_.gather_bytes(mine, root);
    }
    // Every rank's compute stream has reached this point: a one-value sum, then synchronise.
    void barrier() override {
        if (barrier_value_.size() == 0) barrier_value_ = cuda::DeviceBuffer<float>(1);
        all_reduce(barrier_value_.data(), 1, ReduceOp::Sum);
    }
    std::unique_ptr<Communicator> split(int color, int key) override {
        std::unique_ptr<Communicator> host_sub = host_.split(color, key);
        ncclComm_t sub = nullptr;
        // NCCL orders a group by key, then by rank in the parent: as the host communicators do.
        AGPT_NCCL_CHECK(nccl().CommSplit(comm_, color, key, &sub, nullptr));
        return std::make_unique<NcclCommunicator>(std::move(host_sub), sub, compute_);
    }
    [[noreturn]] void abort(int exit_code) override {
        nccl().CommAbort(comm_);
        host_.abort(exit_code);
        std::_Exit(exit_code);  // [[noreturn]] does not carry over a virtual call
    }

    PendingReduce start_all_reduce(float* data, std::size_t n) override {
        if (n == 0) return {};
        AGPT_CUDA_CHECK(cudaEventRecord(compute_ready_, compute_));
        AGPT_CUDA_CHECK(cudaStreamWaitEvent(comm_stream_, compute_ready_, 0));
        AGPT_NCCL_CHECK(nccl().AllReduce(data, data, n, ncclFloat, ncclSum, comm_, comm_stream_));
        cudaEvent_t done = take_event();
        AGPT_CUDA_CHECK(cudaEventRecord(done, comm_stream_));
        PendingReduce pending;
        pending.ticket = ++last_ticket_;
        in_flight_[pending.ticket] = done;
        return pending;
    }
    bool test(PendingReduce& pending) override {
        if (pending.done()) return true;
        const cudaError_t state = cudaEventQuery(event_of(pending));
        if (state == cudaErrorNotReady) return false;
        AGPT_CUDA_CHECK(state);
        finish(pending);
        return true;
    }
    void wait(PendingReduce& pending) override {
        if (pending.done()) return;
        AGPT_CUDA_CHECK(cudaStreamWaitEvent(compute_, event_of(pending), 0));
        finish(pending);
    }

  private:
    void create_streams() {
        // The highest priority: a bucket's sum starts as soon as its gradients are final, ahead
        // of the backward kernels queued behind them.
        int least = 0, greatest = 0;
        AGPT_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
        AGPT_CUDA_CHECK(
            cudaStreamCreateWithPriority(&comm_stream_, cudaStreamNonBlocking, greatest));
        AGPT_CUDA_CHECK(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming));
    }
    void synchronize() {
        AGPT_CUDA_CHECK(cudaStreamSynchronize(compute_));
        ncclResult_t async = ncclSuccess;
        AGPT_NCCL_CHECK(nccl().CommGetAsyncError(comm_, &async));
        if (async != ncclSuccess) cuda::fail_nccl(async, "collective");
    }
    template <class T, class SendCount, class RecvCount>
    void exchange(const T* in, T* out, ncclDataType_t type, SendCount send_count,
                  RecvCount recv_count) {
        AGPT_NCCL_CHECK(nccl().GroupStart());
        std::size_t sent = 0, received = 0;
        for (int r = 0; r < size(); r++) {
            const std::size_t s = send_count(r), v = recv_count(r);
            if (s > 0) AGPT_NCCL_CHECK(nccl().Send(in + sent, s, type, r, comm_, compute_));
            if (v > 0) AGPT_NCCL_CHECK(nccl().Recv(out + received, v, type, r, comm_, compute_));
            sent += s;
            received += v;
        }
        AGPT_NCCL_CHECK(nccl().GroupEnd());
        synchronize();
    }
    cudaEvent_t take_event() {
        if (free_events_.empty()) {
            cudaEvent_t e = nullptr;
            AGPT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
            return e;
        }
        cudaEvent_t e = free_events_.back();
        free_events_.pop_back();
        return e;
    }
    cudaEvent_t event_of(const PendingReduce& pending) const {
        const auto it = in_flight_.find(pending.ticket);
        if (it == in_flight_.end()) fail("all_reduce ticket {} is not in flight", pending.ticket);
        return it->second;
    }
    // An event whose wait is queued can be recorded again: the wait keeps the recorded state.
    void finish(PendingReduce& pending) {
        const auto it = in_flight_.find(pending.ticket);
        free_events_.push_back(it->second);
        in_flight_.erase(it);
        pending.ticket = 0;
    }

    std::unique_ptr<Communicator> owned_host_;  // a split's host group
    Communicator& host_;
    cudaStream_t compute_;
    ncclComm_t comm_ = nullptr;
    cudaStream_t comm_stream_ = nullptr;
    cudaEvent_t compute_ready_ = nullptr;
    std::vector<cudaEvent_t> free_events_;
    std::map<std::int64_t, cudaEvent_t> in_flight_;
    std::int64_t last_ticket_ = 0;
    cuda::DeviceBuffer<float> barrier_value_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host,
                                                     cudaStream_t compute_stream) {
    return std::make_unique<NcclCommunicator>(host, compute_stream);
}

#endif

}  // namespace agpt
