// The AdamW step against the CPU's (torch's arithmetic, op by op), over several steps, for a
// small and a large beta1 (the lerp's two branches); the optional bf16 parameter copy must be
// exactly the rounded fp32 parameters.
#include "kernels/cpu/adamw.h"
#include "cuda_test_util.h"
#include "kernels/cuda/adamw.h"

namespace agpt::cuda::test {
namespace {

TEST(CudaAdamW, MatchesCpuOverSteps) {
    AGPT_REQUIRE_CUDA_DEVICE();
    int case_id = 0;
    for (double beta1 : {0.9, 0.2}) {
        Rng rng(6100 + case_id++);
        const std::size_t n = 10007;
        auto p = random_floats(n, rng), m = random_floats(n, rng, -0.01f, 0.01f);
        auto v = random_floats(n, rng, 0.0f, 1e-4f);
        Dev<float> d_p(p), d_m(m), d_v(v);
        auto d_pb = Dev<bf16>::poisoned(n);
        for (long step = 1; step <= 3; ++step) {
            const auto g = random_floats(n, rng, -0.1f, 0.1f);
            const cpu::AdamWStep s{1e-3, beta1, 0.95, 1e-8, 0.1, step};
            cpu::adamw_update<float>(p.data(), g.data(), m.data(), v.data(), n, s);
            Dev<float> d_g(g);
            adamw_update(d_p.ptr(), d_g.ptr(), d_m.ptr(), d_v.ptr(), n, s, d_pb.ptr());
        }
        const std::string tag = " beta1 " + std::to_string(beta1).substr(0, 3);
        const auto gp = d_p.get();
        expect_close("param" + tag, gp, p, 1e-6);
        expect_close("m" + tag, d_m.get(), m, 1e-6);
        expect_close("v" + tag, d_v.get(), v, 1e-6);
        expect_close("bf16 copy" + tag, d_pb.get(), representable<bf16>(gp), 0.0);
    }
}

}  // namespace
}  // namespace agpt::cuda::test
