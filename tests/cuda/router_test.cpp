// The MoE router (softmax and sigmoid scores, biased top-k, normalised and scaled gates),
// forward and backward, against the CPU on the same logits. fp32 only: the router runs in fp32
// whatever the activations' storage (kernels/cuda/router.h).
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/cpu/router.h"
#include "kernels/cuda/router.h"

namespace agpt::cuda::test {
namespace {

struct RouterCase {
    int N, E, k;
    cpu::RouterOptions opt;
    bool bias;
};

std::string tag_of(const RouterCase& c) {
    return std::string(" ") + cpu::router_score_name(c.opt.score) + " N" + std::to_string(c.N) +
           " E" + std::to_string(c.E) + " k" + std::to_string(c.k) +
           (c.opt.route_norm ? " norm" : "") + (c.bias ? " bias" : "");
}

TEST(CudaRouter, ForwardBackwardFp32) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const RouterCase cases[] = {
        {37, 8, 2, {cpu::RouterScore::softmax, false, 1.0}, false},
        {21, 4, 2, {cpu::RouterScore::sigmoid, true, 2.5}, true},
        {19, 64, 6, {cpu::RouterScore::softmax, true, 1.0}, true},
        {9, 40, 3, {cpu::RouterScore::sigmoid, false, 1.5}, false},
    };
    int case_id = 0;
    for (const RouterCase& c : cases) {
        Rng rng(3100 + case_id++);
        const std::string tag = tag_of(c);
        const std::size_t NE = static_cast<std::size_t>(c.N) * c.E,
                          NK = static_cast<std::size_t>(c.N) * c.k;
        const auto logits = random_floats(NE, rng, -3.0f, 3.0f);
        const auto bias = random_floats(c.E, rng, -0.2f, 0.2f);
        const auto dgates = random_floats(NK, rng);
        const auto dscores = random_floats(NE, rng);
        const auto dlogits0 = random_floats(NE, rng);

        std::vector<int> experts(NK);
        std::vector<float> gates(NK), scores(NE);
        cpu::router_forward<float>(experts.data(), gates.data(), scores.data(), logits.data(),
                                   c.bias ? bias.data() : nullptr, c.N, c.E, c.k, c.opt);
        std::vector<float> dlogits = dlogits0, dlogits_s = dlogits0;
        cpu::router_backward<float>(dlogits.data(), dgates.data(), scores.data(), experts.data(),
                                    c.N, c.E, c.k, c.opt);
        cpu::router_scores_backward<float>(dlogits_s.data(), dscores.data(), scores.data(), c.N,
                                           c.E, c.opt.score);

        Dev<float> d_logits(logits), d_bias(bias), d_dgates(dgates), d_dscores(dscores),
            d_dlogits(dlogits0), d_dlogits_s(dlogits0);
        auto d_gates = Dev<float>::poisoned(NK), d_scores = Dev<float>::poisoned(NE);
        DeviceBuffer<int> d_experts(NK);
        d_experts.fill_bytes(0xFF);
        router_forward(d_experts.data(), d_gates.ptr(), d_scores.ptr(), d_logits.ptr(),
                       c.bias ? d_bias.ptr() : nullptr, c.N, c.E, c.k, c.opt);
        expect_close("router scores" + tag, d_scores.get(), scores, kTolFp32);
        expect_close("router gates" + tag, d_gates.get(), gates, kTolFp32);
        std::vector<int> got(NK);
        d_experts.download(got.data());
        EXPECT_EQ(got, experts) << "router experts" << tag;

        // The backward reads the CPU's routing, so it is checked even if the choice differed.
        DeviceBuffer<int> d_ref_experts = upload(experts);
        Dev<float> d_ref_scores(scores);
        router_backward(d_dlogits.ptr(), d_dgates.ptr(), d_ref_scores.ptr(), d_ref_experts.data(),
                        c.N, c.E, c.k, c.opt);
        expect_close("router_backward dlogits" + tag, d_dlogits.get(), dlogits, kTolFp32);
        router_scores_backward(d_dlogits_s.ptr(), d_dscores.ptr(), d_ref_scores.ptr(), c.N, c.E,
                               c.opt.score);
        expect_close("router_scores_backward dlogits" + tag, d_dlogits_s.get(), dlogits_s,
                     kTolFp32);
    }
}

// Equal biased scores go to the lower expert, as on the CPU: logits equal in pairs.
TEST(CudaRouter, TiesGoToTheLowerExpert) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const int N = 3, E = 6, k = 3;
    const std::vector<float> logits = {1,    1,    0,    0,  2, 2, 0.5f, 0.5f, 0.5f,
                                       0.5f, 0.5f, 0.5f, -1, 3, 3, -1,   3,    3};
    const cpu::RouterOptions opt{cpu::RouterScore::sigmoid, false, 1.0};
    std::vector<int> experts(N * k);
    std::vector<float> gates(N * k), scores(N * E);
    cpu::router_forward<float>(experts.data(), gates.data(), scores.data(), logits.data(), nullptr,
                               N, E, k, opt);
    Dev<float> d_logits(logits);
    auto d_gates = Dev<float>::poisoned(N * k), d_scores = Dev<float>::poisoned(N * E);
    DeviceBuffer<int> d_experts(N * k);
    router_forward(d_experts.data(), d_gates.ptr(), d_scores.ptr(), d_logits.ptr(), nullptr, N, E,
                   k, opt);
    std::vector<int> got(N * k);
    AGPT_CUDA_CHECK(cudaDeviceSynchronize());
    d_experts.download(got.data());
    EXPECT_EQ(got, experts);
    EXPECT_EQ(got, (std::vector<int>{4, 5, 0, 0, 1, 2, 1, 2, 4}));
}

}  // namespace
}  // namespace agpt::cuda::test
