// The MoE FFN on the GPU with its routed experts sharded over the ranks (MoeFfnGpu's
// set_expert_parallel), over the emulated backend: the MPI communicator stands in for NCCL (the
// emulator's device memory is host memory). Run by tests/cuda/cuda_data_parallel_emu_test.sh as
// one process and under mpirun -np 2. Each rank routes its own batch; the reference is the CPU
// MoeFfn with every expert (no exchange at all), run by each rank on every rank's batch: the
// rank's outputs, dx, router and shared-expert gradients are those of its own batch, and its
// experts' gradients the sum over all the batches (the dispatch brought every rank's rows).
// fp32 within 1e-4, bf16 (the CPU on the same bf16 values) within 1e-2.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "dist/communicator.h"
#include "model/gpu/moe_gpu.h"
#include "model/model_args.h"
#include "model/moe.h"
#include "model/transformer.h"

namespace agpt::cuda::test {
namespace {

// Smallest gap, over the tokens, between the k-th and the (k+1)-th biased score.
double routing_margin(const float* scores, const float* bias, int N, int E, int k) {
    double margin = 1e30;
    std::vector<float> b(E);
    for (int n = 0; n < N; n++) {
        for (int e = 0; e < E; e++) b[e] = scores[n * E + e] + bias[e];
        std::sort(b.begin(), b.end(), std::greater<float>());
        margin = std::min(margin, static_cast<double>(b[k - 1] - b[k]));
    }
    return margin;
}

std::vector<float> slice(const std::vector<float>& v, std::size_t first, std::size_t n) {
    return {v.begin() + static_cast<long>(first), v.begin() + static_cast<long>(first + n)};
}

template <typename T>
void check_expert_parallel_layer(const char* flavor, int N, int seq_len, double tol,
                                 uint64_t seed) {
    constexpr bool kBf16 = !std::is_same_v<T, float>;
    Communicator& world = world_communicator();
    const int rank = world.rank(), ranks = world.size();
    // A sub-group of the same ranks, as NCCL would be: its own messages.
    const std::unique_ptr<Communicator> ep = world.split(0, rank);
    MoeShape s = moe_shape_of(find_flavor(flavor)->args);
    s.aux_loss_alpha = 0.5;
    const int D = s.dim, E = s.n_experts, K = s.top_k, F = s.hidden, FS = s.shared_hidden();
    ASSERT_GT(FS, 0) << flavor;
    ASSERT_EQ(E % ranks, 0) << flavor;
    const int El = E / ranks;
    const std::string tag = std::string(" ") + flavor + " rank " + std::to_string(rank);
    auto rep = [&](std::vector<float> v) { return kBf16 ? representable<bf16>(v) : v; };

    // The same full weights on every rank.
    Rng rng(seed);
    const float sd = 1.7f / std::sqrt(static_cast<float>(D)), sf = 1.7f / std::sqrt(1.0f * F),
                ss = 1.7f / std::sqrt(1.0f * FS);
    const auto router = rep(random_floats(static_cast<std::size_t>(E) * D, rng, -0.6f, 0.6f));
    const auto w1 = rep(random_floats(static_cast<std::size_t>(E) * F * D, rng, -sd, sd));
    const auto w3 = rep(random_floats(static_cast<std::size_t>(E) * F * D, rng, -sd, sd));
    const auto w2 = rep(random_floats(static_cast<std::size_t>(E) * D * F, rng, -sf, sf));
    const auto sw1 = rep(random_floats(static_cast<std::size_t>(FS) * D, rng, -sd, sd));
    const auto sw3 = rep(random_floats(static_cast<std::size_t>(FS) * D, rng, -sd, sd));
    const auto sw2 = rep(random_floats(static_cast<std::size_t>(D) * FS, rng, -ss, ss));
    const auto bias = random_floats(E, rng, -0.1f, 0.1f);
    MoeWeights<float> full;
    full.router = router.data();
    full.w1 = w1.data();
    full.w2 = w2.data();
    full.w3 = w3.data();
    full.shared_w1 = sw1.data();
    full.shared_w2 = sw2.data();
    full.shared_w3 = sw3.data();
    full.expert_bias = bias.data();

    // Every rank's batch (x, dout), drawn from the rank's seed.
    const std::size_t ND = static_cast<std::size_t>(N) * D;
    auto batch = [&](int r) {
        Rng b(seed + 100 + static_cast<uint64_t>(r));
        auto x = rep(random_floats(ND, b));
        auto dout = rep(random_floats(ND, b));
        return std::make_pair(x, dout);
    };
    // Reference: the whole layer on each batch; this rank's batch gives out, dx, the router's
    // and the shared experts' gradients, the sum over the batches the experts' ones.
    const std::size_t n_w1 = static_cast<std::size_t>(E) * F * D, n_w2 = n_w1;
    std::vector<float> out, dx, g_router, g_sw1, g_sw2, g_sw3, g_w1(n_w1), g_w2(n_w2), g_w3(n_w1);
    std::vector<double> load;
    for (int r = 0; r < ranks; r++) {
        const auto [x, dout] = batch(r);
        MoeFfn<float> cpu(s, N);
        std::vector<float> o(ND, 0.0f), d(ND, 0.0f), gr(router.size()), gs1(sw1.size()),
            gs2(sw2.size()), gs3(sw3.size());
        MoeGrads<float> g;
        g.router = gr.data();
        g.w1 = g_w1.data();
        g.w2 = g_w2.data();
        g.w3 = g_w3.data();
        g.shared_w1 = gs1.data();
        g.shared_w2 = gs2.data();
        g.shared_w3 = gs3.data();
        cpu.forward(o.data(), x.data(), full, N, /*count_load=*/true, seq_len);
        ASSERT_GT(routing_margin(cpu.scores(), bias.data(), N, E, K), 1e-4)
            << "near tie in the inputs" << tag;
        cpu.backward(d.data(), g, dout.data(), x.data(), full, N, /*aux_weight=*/1.0);
        if (r != rank) continue;
        out = o;
        dx = d;
        g_router = gr;
        g_sw1 = gs1;
        g_sw2 = gs2;
        g_sw3 = gs3;
        load = cpu.tokens_per_expert();
    }

    // This rank's GPU layer holds experts [rank·El, (rank+1)·El).
    const std::size_t expert = static_cast<std::size_t>(F) * D, first = rank * El * expert,
                      count = El * expert;
    Blas blas;
    MoeFfnGpu<T> gpu(s, N, blas);
    gpu.set_expert_parallel(ep.get());
    EXPECT_EQ(gpu.local_experts(), El);
    Dev<T> d_router(router), d_w1(slice(w1, first, count)), d_w2(slice(w2, first, count)),
        d_w3(slice(w3, first, count)), d_sw1(sw1), d_sw2(sw2), d_sw3(sw3);
    Dev<float> d_bias(bias);
    MoeWeights<T> w;
    w.router = d_router.ptr();
    w.w1 = d_w1.ptr();
    w.w2 = d_w2.ptr();
    w.w3 = d_w3.ptr();
    w.shared_w1 = d_sw1.ptr();
    w.shared_w2 = d_sw2.ptr();
    w.shared_w3 = d_sw3.ptr();
    w.expert_bias = d_bias.ptr();
    Dev<float> gd_router(std::vector<float>(router.size(), 0.0f)),
        gd_w1(std::vector<float>(count, 0.0f)), gd_w2(std::vector<float>(count, 0.0f)),
        gd_w3(std::vector<float>(count, 0.0f)), gd_sw1(std::vector<float>(sw1.size(), 0.0f)),
        gd_sw2(std::vector<float>(sw2.size(), 0.0f)), gd_sw3(std::vector<float>(sw3.size(), 0.0f));
    MoeGrads<float> g;
    g.router = gd_router.ptr();
    g.w1 = gd_w1.ptr();
    g.w2 = gd_w2.ptr();
    g.w3 = gd_w3.ptr();
    g.shared_w1 = gd_sw1.ptr();
    g.shared_w2 = gd_sw2.ptr();
    g.shared_w3 = gd_sw3.ptr();

    const auto [x, dout] = batch(rank);
    Dev<T> d_x(x), d_dout(dout), d_out(std::vector<float>(ND, 0.0f)),
        d_dx(std::vector<float>(ND, 0.0f));
    gpu.forward(d_out.ptr(), d_x.ptr(), w, N, /*count_load=*/true, seq_len);
    expect_close("ep moe out" + tag, d_out.get(), out, tol);
    EXPECT_EQ(gpu.tokens_per_expert(), load) << "tokens_per_expert" << tag;
    gpu.backward(d_dx.ptr(), g, d_dout.ptr(), d_x.ptr(), w, N, /*aux_weight=*/1.0);
    expect_close("ep moe dx" + tag, d_dx.get(), dx, tol);
    expect_close("ep moe d router" + tag, gd_router.get(), g_router, tol);
    expect_close("ep moe d shared_w1" + tag, gd_sw1.get(), g_sw1, tol);
    expect_close("ep moe d shared_w2" + tag, gd_sw2.get(), g_sw2, tol);
    expect_close("ep moe d shared_w3" + tag, gd_sw3.get(), g_sw3, tol);
    expect_close("ep moe d w1 (local experts)" + tag, gd_w1.get(), slice(g_w1, first, count), tol);
    expect_close("ep moe d w2 (local experts)" + tag, gd_w2.get(), slice(g_w2, first, count), tol);
    expect_close("ep moe d w3 (local experts)" + tag, gd_w3.get(), slice(g_w3, first, count), tol);
    world.barrier();
}

TEST(CudaExpertParallel, MoeLayerMatchesTheCpuLayerWithEveryExpertFp32) {
    check_expert_parallel_layer<float>("moe_tiny", 12, 6, kTolFp32Long, 4100);
}

TEST(CudaExpertParallel, MoeLayerMatchesTheCpuLayerWithEveryExpertBf16) {
    check_expert_parallel_layer<bf16>("moe_tiny", 12, 6, kTolBf16, 4200);
}

}  // namespace
}  // namespace agpt::cuda::test
