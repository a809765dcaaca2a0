// GELU (tanh), the fused bias + GELU, the bias add and its gradient, and GPT-2's position
// embeddings (a bias of T·C values per sequence) against the CPU kernels on the same inputs.
#include <cstring>

#include "cuda_test_util.h"
#include "kernels/cpu/bias.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cuda/bias.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gelu.h"

namespace agpt::cuda::test {
namespace {

template <typename T>
void check_gelu(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        int N, F;
    };
    const Case cases[] = {{37, 64}, {3, 333}, {16, 3072}};
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(seed + case_id++);
        const std::size_t n = static_cast<std::size_t>(c.N) * c.F;
        const auto x = representable<T>(random_floats(n, rng, -5.0f, 5.0f));
        const auto bias = representable<T>(random_floats(c.F, rng));
        const auto dout = representable<T>(random_floats(n, rng));
        const auto dinp0 = representable<T>(random_floats(n, rng));
        const std::string tag = " N" + std::to_string(c.N) + " F" + std::to_string(c.F);

        std::vector<float> out(n), dinp = dinp0, dfresh(n, 0.0f);
        cpu::gelu_forward<float>(out.data(), x.data(), static_cast<long>(n));
        cpu::gelu_backward<float>(dinp.data(), dout.data(), x.data(), static_cast<long>(n));
        cpu::gelu_backward<float>(dfresh.data(), dout.data(), x.data(), static_cast<long>(n));

        Dev<T> d_x(x), d_bias(bias), d_dout(dout), d_dinp(dinp0);
        auto d_out = Dev<T>::poisoned(n);
        gelu_forward<T>(d_out.ptr(), d_x.ptr(), static_cast<long>(n));
        expect_close("gelu_forward" + tag, d_out.get(), out, tol);
        gelu_backward<T>(d_dinp.ptr(), d_dout.ptr(), d_x.ptr(), static_cast<long>(n));
        expect_close("gelu_backward (accumulate)" + tag, d_dinp.get(), dinp, tol);
        auto d_fresh = Dev<T>::poisoned(n);  // overwrite: the poison must not survive
        gelu_backward<T>(d_fresh.ptr(), d_dout.ptr(), d_x.ptr(), static_cast<long>(n), false);
        expect_close("gelu_backward (overwrite)" + tag, d_fresh.get(), dfresh, tol);

        // Fused bias + GELU against the CPU's bias add then GELU.
        std::vector<float> pre = x, pre_out(n);
        cpu::bias_forward<float>(pre.data(), bias.data(), c.N, c.F);
        cpu::gelu_forward<float>(pre_out.data(), pre.data(), static_cast<long>(n));
        Dev<T> d_pre(x);
        auto d_pre_out = Dev<T>::poisoned(n);
        bias_gelu_forward<T>(d_pre_out.ptr(), d_pre.ptr(), d_bias.ptr(), c.N, c.F);
        expect_close("bias_gelu_forward pre" + tag, d_pre.get(), pre, tol);
        expect_close("bias_gelu_forward out" + tag, d_pre_out.get(), pre_out, tol);
    }
}

TEST(CudaGelu, Fp32) {
    check_gelu<float>(kTolFp32, 5300);
}
TEST(CudaGelu, Bf16) {
    check_gelu<bf16>(kTolBf16, 5400);
}

template <typename T>
void check_bias(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        int N, OC;
    };
    // N = 600 spans three of the backward's 256-row blocks; N = 1 and 40 one.
    const Case cases[] = {{40, 64}, {600, 70}, {1, 300}, {7, 2304}};
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(seed + case_id++);
        const std::size_t n = static_cast<std::size_t>(c.N) * c.OC;
        const auto inp = representable<T>(random_floats(n, rng));
        const auto bias = representable<T>(random_floats(c.OC, rng));
        const auto dout = representable<T>(random_floats(n, rng));
        const auto db0 = random_floats(c.OC, rng);
        const std::string tag = " N" + std::to_string(c.N) + " OC" + std::to_string(c.OC);

        std::vector<float> set(n), acc = inp, db = db0;
        cpu::bias_forward<float>(set.data(), bias.data(), c.N, c.OC, false);
        cpu::bias_forward<float>(acc.data(), bias.data(), c.N, c.OC, true);
        cpu::bias_backward<float>(db.data(), dout.data(), c.N, c.OC);

        Dev<T> d_inp(inp), d_bias(bias), d_dout(dout), d_inplace(inp);
        auto d_set = Dev<T>::poisoned(n);
        auto d_res = Dev<T>::poisoned(n);
        bias_forward<T>(d_set.ptr(), nullptr, d_bias.ptr(), c.N, c.OC);
        expect_close("bias_forward (set)" + tag, d_set.get(), set, 0.0);
        bias_forward<T>(d_inplace.ptr(), d_inplace.ptr(), d_bias.ptr(), c.N, c.OC);
        expect_close("bias_forward (in place)" + tag, d_inplace.get(), acc, tol);
        bias_forward<T>(d_res.ptr(), d_inp.ptr(), d_bias.ptr(), c.N, c.OC);
        expect_close("bias_forward (residual)" + tag, d_res.get(), acc, tol);

        Dev<float> d_db(db0), d_db2(db0);
        bias_backward<T>(d_db.ptr(), d_dout.ptr(), c.N, c.OC);
        bias_backward<T>(d_db2.ptr(), d_dout.ptr(), c.N, c.OC);
        const auto got = d_db.get(), again = d_db2.get();
        expect_close("bias_backward (fp32 dbias)" + tag, got, db, kTolFp32);
        EXPECT_EQ(0, std::memcmp(got.data(), again.data(), got.size() * sizeof(float)))
            << "bias_backward is not run-to-run deterministic" << tag;
    }
}

TEST(CudaBias, Fp32) {
    check_bias<float>(kTolFp32, 5500);
}
TEST(CudaBias, Bf16) {
    check_bias<bf16>(kTolBf16, 5600);
}

// GPT-2's input: x = wte[tokens] + wpe[0..T) per sequence; d wpe = Σ over the batch.
template <typename T>
void check_position_embedding(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const int B = 3, T_len = 9, C = 64, V = 50, max_seq = 16;
    Rng rng(seed);
    const int N = B * T_len;
    const std::size_t NC = static_cast<std::size_t>(N) * C;
    const auto tokens = random_tokens(N, V, rng);
    const auto wte = representable<T>(random_floats(static_cast<std::size_t>(V) * C, rng));
    const auto wpe = representable<T>(random_floats(static_cast<std::size_t>(max_seq) * C, rng));
    const auto dx = representable<T>(random_floats(NC, rng));
    const auto dwpe0 = random_floats(wpe.size(), rng);

    std::vector<float> x(NC), dwpe = dwpe0;
    cpu::embedding_forward<float>(x.data(), tokens.data(), wte.data(), N, C);
    cpu::bias_forward<float>(x.data(), wpe.data(), B, T_len * C);
    cpu::bias_backward<float>(dwpe.data(), dx.data(), B, T_len * C);

    DeviceBuffer<int32_t> d_tok = upload(tokens);
    Dev<T> d_wte(wte), d_wpe(wpe), d_dx(dx);
    Dev<float> d_dwpe(dwpe0);
    auto d_x = Dev<T>::poisoned(NC);
    embedding_forward<T>(d_x.ptr(), d_tok.data(), d_wte.ptr(), N, C);
    bias_forward<T>(d_x.ptr(), d_x.ptr(), d_wpe.ptr(), B, T_len * C);
    expect_close("wte[tokens] + wpe", d_x.get(), x, tol);
    bias_backward<T>(d_dwpe.ptr(), d_dx.ptr(), B, T_len * C);
    // Rows T..max_seq of wpe are not used: their gradient keeps its value.
    expect_close("d wpe (fp32)", d_dwpe.get(), dwpe, kTolFp32);
}

TEST(CudaPositionEmbedding, Fp32) {
    check_position_embedding<float>(kTolFp32, 5700);
}
TEST(CudaPositionEmbedding, Bf16) {
    check_position_embedding<bf16>(kTolBf16, 5800);
}

}  // namespace
}  // namespace agpt::cuda::test
