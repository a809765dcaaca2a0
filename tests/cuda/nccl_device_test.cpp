// NcclCommunicator on a device, one rank (a single-process host communicator bootstraps it):
// every collective against the values it must leave, the gradient sum started on the
// communication stream and awaited by the compute stream, and a sub-group from split. Multi-GPU
// sums are checked by `agpt train` under mpirun on a machine with several GPUs
// (docs/distributed.md). Not in the emulator: it runs NCCL itself.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "dist/nccl_communicator.h"
#include "kernels/cuda/nccl_loader.h"

namespace agpt::cuda::test {
namespace {

struct NcclFixture {
    std::unique_ptr<Communicator> host = make_single_process_communicator();
    cudaStream_t stream = nullptr;
    std::unique_ptr<Communicator> nccl;
    NcclFixture() {
        // Blocking: ordered with the synchronous copies of DeviceBuffer (legacy stream).
        AGPT_CUDA_CHECK(cudaStreamCreate(&stream));
        nccl = make_nccl_communicator(*host, stream);
    }
    ~NcclFixture() {
        nccl.reset();
        cudaStreamDestroy(stream);
    }
};

std::vector<float> values(std::size_t n, float first) {
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; i++) v[i] = first + 0.5f * static_cast<float>(i);
    return v;
}

TEST(NcclDevice, CollectivesOnOneRank) {
    AGPT_REQUIRE_CUDA_DEVICE();
    int version = 0;
    ASSERT_EQ(nccl().GetVersion(&version), ncclSuccess);
    std::printf("    NCCL %d\n", version);
    NcclFixture f;
    Communicator& c = *f.nccl;
    EXPECT_EQ(c.backend(), "nccl");
    EXPECT_EQ(c.rank(), 0);
    EXPECT_EQ(c.size(), 1);
    const std::size_t n = 1000;
    const std::vector<float> in = values(n, -3.0f);
    DeviceBuffer<float> a(n), b(n);
    std::vector<float> out(n);
    for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Min, ReduceOp::Max}) {
        a.upload(in.data());
        c.all_reduce(a.data(), n, op);
        a.download(out.data());
        EXPECT_EQ(out, in) << static_cast<int>(op);
    }
    std::vector<double> in_d(n), out_d(n);
    for (std::size_t i = 0; i < n; i++) in_d[i] = 1e-3 * static_cast<double>(i) - 0.25;
    DeviceBuffer<double> d(n);
    d.upload(in_d.data());
    c.all_reduce(d.data(), n, ReduceOp::Sum);
    d.download(out_d.data());
    EXPECT_EQ(out_d, in_d);

    a.upload(in.data());
    b.fill_bytes(0xFF, f.stream);
    c.reduce_scatter(a.data(), b.data(), n, ReduceOp::Sum);
    b.download(out.data());
    EXPECT_EQ(out, in);
    b.fill_bytes(0xFF, f.stream);
    c.all_gather(a.data(), b.data(), n);
    b.download(out.data());
    EXPECT_EQ(out, in);
    b.fill_bytes(0xFF, f.stream);
    c.all_to_all(a.data(), b.data(), n);
    b.download(out.data());
    EXPECT_EQ(out, in);
    const int count = 700;
    b.fill_bytes(0xFF, f.stream);
    c.all_to_all_v(a.data(), &count, b.data(), &count);
    b.download(out.data());
    EXPECT_TRUE(std::equal(in.begin(), in.begin() + count, out.begin()));
    EXPECT_TRUE(std::isnan(out[count]));  // nothing past the counts
    std::vector<int> ints(n);
    for (std::size_t i = 0; i < n; i++) ints[i] = static_cast<int>(i) * 7 - 100;
    DeviceBuffer<int> ia(n), ib(n);
    ia.upload(ints.data());
    c.all_to_all(ia.data(), ib.data(), n);
    std::vector<int> ints_out(n);
    ib.download(ints_out.data());
    EXPECT_EQ(ints_out, ints);
    a.upload(in.data());
    c.broadcast(a.data(), n * sizeof(float), 0);
    a.download(out.data());
    EXPECT_EQ(out, in);
    c.barrier();
    EXPECT_EQ(c.gather_bytes("rank 0", 0), std::vector<std::string>{"rank 0"});

    // A sub-group of the one rank works on its own.
    const std::unique_ptr<Communicator> sub = c.split(0, 0);
    EXPECT_EQ(sub->size(), 1);
    a.upload(in.data());
    sub->all_reduce(a.data(), n, ReduceOp::Max);
    a.download(out.data());
    EXPECT_EQ(out, in);
}

TEST(NcclDevice, StartedSumIsOrderedBetweenTheComputeStreamsWork) {
    AGPT_REQUIRE_CUDA_DEVICE();
    NcclFixture f;
    const std::size_t n = std::size_t{1} << 22;  // long enough to be in flight
    const std::vector<float> in = values(n, 1.0f);
    std::vector<float> out(n);
    DeviceBuffer<float> a(n);
    // Queued on the compute stream before the sum, and zeroed after it: the sum must see the
    // upload, and what follows wait() must see the sum's result (here: be overwritten by it last).
    AGPT_CUDA_CHECK(
        cudaMemcpyAsync(a.data(), in.data(), a.bytes(), cudaMemcpyHostToDevice, f.stream));
    PendingReduce p = f.nccl->start_all_reduce(a.data(), n);
    EXPECT_FALSE(p.done());
    f.nccl->wait(p);
    EXPECT_TRUE(p.done());
    AGPT_CUDA_CHECK(
        cudaMemcpyAsync(out.data(), a.data(), a.bytes(), cudaMemcpyDeviceToHost, f.stream));
    AGPT_CUDA_CHECK(cudaStreamSynchronize(f.stream));
    EXPECT_EQ(out, in);
    // test() reports completion once the device is done.
    PendingReduce q = f.nccl->start_all_reduce(a.data(), n);
    AGPT_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_TRUE(f.nccl->test(q));
    EXPECT_TRUE(q.done());
}

}  // namespace
}  // namespace agpt::cuda::test
