// The MoE FFN on the GPU (model/gpu/moe_gpu.h) against the CPU MoeFfn (model/moe.h) on the same
// weights and inputs, with moe_tiny's and moe_debug's shapes: outputs, routing, dx, every weight
// gradient, the balance loss and the loads. fp32 within 1e-4, bf16 (the CPU on the same bf16
// values) within 1e-2; routing and loads exactly equal. The inputs keep a margin between the
// k-th and the next biased score of every token, so both sides choose the same experts.
#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda_test_util.h"
#include "model/gpu/moe_gpu.h"
#include "model/model_args.h"
#include "model/moe.h"
#include "model/transformer.h"

namespace agpt::cuda::test {
namespace {

struct MoeCase {
    const char* flavor;
    bool shared;
    double aux_alpha;
    bool bias;
    bool zero_dout;  // only the balance loss's gradient flows
    int N, seq_len;
};

MoeShape shape_of(const MoeCase& c) {
    const Flavor* f = find_flavor(c.flavor);
    if (!f) throw Error(std::string("no flavor ") + c.flavor);
    MoeShape s = moe_shape_of(f->args);
    if (!c.shared) s.n_shared_experts = 0;
    s.aux_loss_alpha = c.aux_alpha;
    return s;
}

// The weights of one layer as float vectors (values representable in T) in MoeWeights' layout.
struct HostMoe {
    std::vector<float> router, w1, w2, w3, sw1, sw2, sw3, bias;
    HostMoe(const MoeShape& s, bool with_bias, bool bf16, Rng& rng) {
        const std::size_t D = s.dim, E = s.n_experts, F = s.hidden, FS = s.shared_hidden();
        auto draw = [&](std::size_t n, float scale) {
            auto v = random_floats(n, rng, -scale, scale);
            return bf16 ? representable<cuda::bf16>(v) : v;
        };
        router = draw(E * D, 0.6f);
        w1 = draw(E * F * D, 1.7f / std::sqrt(static_cast<float>(D)));
        w3 = draw(E * F * D, 1.7f / std::sqrt(static_cast<float>(D)));
        w2 = draw(E * D * F, 1.7f / std::sqrt(static_cast<float>(F)));
        sw1 = draw(FS * D, 1.7f / std::sqrt(static_cast<float>(D)));
        sw3 = draw(FS * D, 1.7f / std::sqrt(static_cast<float>(D)));
        sw2 = draw(D * FS, 1.7f / std::sqrt(static_cast<float>(FS > 0 ? FS : 1)));
        if (with_bias) bias = random_floats(E, rng, -0.1f, 0.1f);
    }
    MoeWeights<float> weights() const {
        MoeWeights<float> w;
        w.router = router.data();
        w.w1 = w1.data();
        w.w2 = w2.data();
        w.w3 = w3.data();
        if (!sw1.empty()) {
            w.shared_w1 = sw1.data();
            w.shared_w2 = sw2.data();
            w.shared_w3 = sw3.data();
        }
        w.expert_bias = bias.empty() ? nullptr : bias.data();
        return w;
    }
};

// Gradient buffers: host vectors with their starting values, or device fp32 copies of them. The
// starting values (accumulation is part of the contract) are small, so that the comparisons
// measure the computed gradients rather than what they were added to.
struct HostGrads {
    std::vector<float> router, w1, w2, w3, sw1, sw2, sw3;
    HostGrads(const HostMoe& m, Rng& rng) {
        auto draw = [&](std::size_t n) { return random_floats(n, rng, -1e-3f, 1e-3f); };
        router = draw(m.router.size());
        w1 = draw(m.w1.size());
        w2 = draw(m.w2.size());
        w3 = draw(m.w3.size());
        sw1 = draw(m.sw1.size());
        sw2 = draw(m.sw2.size());
        sw3 = draw(m.sw3.size());
    }
    MoeGrads<float> grads() {
        MoeGrads<float> g;
        g.router = router.data();
        g.w1 = w1.data();
        g.w2 = w2.data();
        g.w3 = w3.data();
        g.shared_w1 = sw1.data();
        g.shared_w2 = sw2.data();
        g.shared_w3 = sw3.data();
        return g;
    }
};

template <typename T>
struct DeviceMoe {
    Dev<T> router, w1, w2, w3, sw1, sw2, sw3;
    Dev<float> bias;
    bool has_shared, has_bias;
    explicit DeviceMoe(const HostMoe& m)
        : router(m.router),
          w1(m.w1),
          w2(m.w2),
          w3(m.w3),
          sw1(m.sw1),
          sw2(m.sw2),
          sw3(m.sw3),
          bias(m.bias),
          has_shared(!m.sw1.empty()),
          has_bias(!m.bias.empty()) {}
    MoeWeights<T> weights() {
        MoeWeights<T> w;
        w.router = router.ptr();
        w.w1 = w1.ptr();
        w.w2 = w2.ptr();
        w.w3 = w3.ptr();
        if (has_shared) {
            w.shared_w1 = sw1.ptr();
            w.shared_w2 = sw2.ptr();
            w.shared_w3 = sw3.ptr();
        }
        w.expert_bias = has_bias ? bias.ptr() : nullptr;
        return w;
    }
};

struct DeviceGrads {
    Dev<float> router, w1, w2, w3, sw1, sw2, sw3;
    explicit DeviceGrads(const HostGrads& g)
        : router(g.router), w1(g.w1), w2(g.w2), w3(g.w3), sw1(g.sw1), sw2(g.sw2), sw3(g.sw3) {}
    MoeGrads<float> grads() {
        MoeGrads<float> g;
        g.router = router.ptr();
        g.w1 = w1.ptr();
        g.w2 = w2.ptr();
        g.w3 = w3.ptr();
        g.shared_w1 = sw1.ptr();
        g.shared_w2 = sw2.ptr();
        g.shared_w3 = sw3.ptr();
        return g;
    }
};

// Smallest gap, over the tokens, between the k-th and the (k+1)-th biased score.
double routing_margin(const float* scores, const float* bias, int N, int E, int k) {
    double margin = 1e30;
    std::vector<float> b(E);
    for (int n = 0; n < N; n++) {
        for (int e = 0; e < E; e++) b[e] = scores[n * E + e] + (bias ? bias[e] : 0.0f);
        std::sort(b.begin(), b.end(), std::greater<float>());
        if (k < E) margin = std::min(margin, static_cast<double>(b[k - 1] - b[k]));
    }
    return margin;
}

template <typename T>
void check_moe(const MoeCase& c, double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    constexpr bool kBf16 = !std::is_same_v<T, float>;
    const MoeShape s = shape_of(c);
    const int N = c.N, D = s.dim, E = s.n_experts, K = s.top_k;
    const std::string tag = std::string(" ") + c.flavor + (c.shared ? " shared" : "") +
                            (c.aux_alpha > 0 ? " aux" : "") + (c.bias ? " bias" : "") +
                            (c.zero_dout ? " dout=0" : "");
    Rng rng(seed);
    const HostMoe m(s, c.bias, kBf16, rng);
    auto rep = [&](std::vector<float> v) { return kBf16 ? representable<cuda::bf16>(v) : v; };
    const std::size_t ND = static_cast<std::size_t>(N) * D;
    const auto x = rep(random_floats(ND, rng));
    const auto out0 = rep(random_floats(ND, rng));
    const auto dout = c.zero_dout ? std::vector<float>(ND, 0.0f) : rep(random_floats(ND, rng));
    const auto dx0 = rep(random_floats(ND, rng, -1e-3f, 1e-3f));
    HostGrads g_ref(m, rng);
    const HostGrads g0 = g_ref;
    const double aux_weight = 1.0;

    MoeFfn<float> cpu(s, N);
    std::vector<float> out = out0, dx = dx0;
    cpu.forward(out.data(), x.data(), m.weights(), N, /*count_load=*/true, c.seq_len);
    ASSERT_GT(routing_margin(cpu.scores(), m.bias.empty() ? nullptr : m.bias.data(), N, E, K), 1e-4)
        << "near tie in the inputs" << tag;
    cpu.backward(dx.data(), g_ref.grads(), dout.data(), x.data(), m.weights(), N, aux_weight);

    Blas blas;
    MoeFfnGpu<T> gpu(s, N, blas);
    DeviceMoe<T> dm(m);
    DeviceGrads dg(g0);
    Dev<T> d_x(x), d_out(out0), d_dout(dout), d_dx(dx0);
    gpu.forward(d_out.ptr(), d_x.ptr(), dm.weights(), N, /*count_load=*/true, c.seq_len);
    expect_close("moe out" + tag, d_out.get(), out, tol);
    std::vector<int> experts(static_cast<std::size_t>(N) * K);
    AGPT_CUDA_CHECK(cudaDeviceSynchronize());
    AGPT_CUDA_CHECK(cudaMemcpy(experts.data(), gpu.experts(), sizeof(int) * experts.size(),
                               cudaMemcpyDeviceToHost));
    EXPECT_TRUE(std::equal(experts.begin(), experts.end(), cpu.experts())) << "experts" << tag;
    std::vector<float> gates(experts.size());
    AGPT_CUDA_CHECK(cudaMemcpy(gates.data(), gpu.gates(), sizeof(float) * gates.size(),
                               cudaMemcpyDeviceToHost));
    expect_close("moe gates" + tag, gates,
                 std::vector<float>(cpu.gates(), cpu.gates() + gates.size()), tol);
    EXPECT_EQ(gpu.last_load(), cpu.last_load()) << "last_load" << tag;
    EXPECT_EQ(gpu.tokens_per_expert(), cpu.tokens_per_expert()) << "tokens_per_expert" << tag;
    if (c.aux_alpha > 0) {
        const double ref = cpu.aux_loss(), got = gpu.aux_loss();
        std::printf("    %-44s %.8f vs %.8f\n", ("aux loss" + tag).c_str(), got, ref);
        EXPECT_GT(ref, 0.0);
        EXPECT_NEAR(got, ref, tol * ref) << "aux loss" << tag;
    }

    gpu.backward(d_dx.ptr(), dg.grads(), d_dout.ptr(), d_x.ptr(), dm.weights(), N, aux_weight);
    expect_close("moe dx" + tag, d_dx.get(), dx, tol);
    expect_close("moe d router" + tag, dg.router.get(), g_ref.router, tol);
    // dout = 0: the experts get no gradient (their starting values come back).
    expect_close("moe d w1" + tag, dg.w1.get(), g_ref.w1, tol);
    expect_close("moe d w2" + tag, dg.w2.get(), g_ref.w2, tol);
    expect_close("moe d w3" + tag, dg.w3.get(), g_ref.w3, tol);
    if (c.shared) {
        expect_close("moe d shared_w1" + tag, dg.sw1.get(), g_ref.sw1, tol);
        expect_close("moe d shared_w2" + tag, dg.sw2.get(), g_ref.sw2, tol);
        expect_close("moe d shared_w3" + tag, dg.sw3.get(), g_ref.sw3, tol);
    }
    if (c.zero_dout) {
        // The router's gradient is the balance loss's alone: it must have moved.
        EXPECT_GT(rel_err(g_ref.router, g0.router), 1e-3) << "no balance-loss gradient" << tag;
    }

    // Loads accumulate over forwards with count_load and restart at reset_load.
    gpu.forward(d_out.ptr(), d_x.ptr(), dm.weights(), N, /*count_load=*/true, c.seq_len);
    std::vector<double> twice = cpu.tokens_per_expert();
    for (double& t : twice) t *= 2;
    EXPECT_EQ(gpu.tokens_per_expert(), twice) << "tokens_per_expert after two forwards" << tag;
    gpu.reset_load();
    EXPECT_EQ(gpu.tokens_per_expert(), std::vector<double>(E, 0.0)) << "reset_load" << tag;
}

// moe_tiny: sigmoid router, normalised gates, scale 2.5, 4 experts top-2, dim 32, hidden 16.
const MoeCase kTinySharedAux{"moe_tiny", true, 0.5, true, false, 24, 8};
const MoeCase kTinyPlain{"moe_tiny", false, 0.0, false, false, 16, 0};
const MoeCase kTinyAuxOnly{"moe_tiny", true, 0.5, false, true, 12, 6};
// moe_debug: softmax router, 8 experts top-2, dim 128, hidden 128, one shared expert.
const MoeCase kDebugSharedAux{"moe_debug", true, 0.3, true, false, 12, 6};
const MoeCase kDebugPlain{"moe_debug", false, 0.0, false, false, 10, 0};

TEST(MoeFfnGpu, TinyFp32) {
    check_moe<float>(kTinySharedAux, kTolFp32Long, 3500);
    check_moe<float>(kTinyPlain, kTolFp32Long, 3501);
    check_moe<float>(kTinyAuxOnly, kTolFp32Long, 3502);
}
TEST(MoeFfnGpu, DebugFp32) {
    check_moe<float>(kDebugSharedAux, kTolFp32Long, 3510);
    check_moe<float>(kDebugPlain, kTolFp32Long, 3511);
}
TEST(MoeFfnGpu, TinyBf16) {
    check_moe<bf16>(kTinySharedAux, kTolBf16, 3600);
    check_moe<bf16>(kTinyPlain, kTolBf16, 3601);
}
TEST(MoeFfnGpu, DebugBf16) {
    check_moe<bf16>(kDebugSharedAux, kTolBf16, 3610);
}

}  // namespace
}  // namespace agpt::cuda::test
