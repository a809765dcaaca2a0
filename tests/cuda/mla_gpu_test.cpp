// MLA on the GPU (model/gpu/mla_gpu.h) against the CPU Mla (model/mla.h) on the same weights and
// inputs, with moe_tiny's (q LoRA, YaRN) and moe_debug's (plain wq) shapes and the MoE table
// flavors' heads (192 padded): the output, dx and every weight gradient, fp32 within 1e-4 and
// bf16 (the CPU on the same bf16 values) within 1e-2. Head sizes the GPU attention cannot take
// are refused.
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "cuda_test_util.h"
#include "model/gpu/mla_gpu.h"
#include "model/model_args.h"
#include "model/transformer.h"

namespace agpt::cuda::test {
namespace {

MlaShape mla_shape_for(const char* flavor) {
    const Flavor* f = find_flavor(flavor);
    if (!f) throw Error(std::string("no flavor ") + flavor);
    return mla_shape_of(f->args);
}

// The MoE table flavors' heads (moe_debugmodel's: qk_nope 128 + qk_rope 64 = 192, v_head 128, no
// q LoRA, YaRN) on a tiny layer: dim 32, 2 heads, kv_lora_rank 16.
MlaShape table_heads_shape() {
    MlaShape s = mla_shape_for("moe_debugmodel");
    s.dim = 32;
    s.n_heads = 2;
    s.kv_lora_rank = 16;
    return s;
}

// One set of MLA tensors (weights, or gradients) as host vectors in MlaWeights' order.
struct MlaTensors {
    std::vector<float> wq, wq_a, q_norm, wq_b, wkv_a, kv_norm, wkv_b, wo;
    std::vector<std::vector<float>*> all() {
        return {&wq, &wq_a, &q_norm, &wq_b, &wkv_a, &kv_norm, &wkv_b, &wo};
    }
};

// Weights (norm gains around 1) when `weights`, else small starting gradients.
MlaTensors random_mla(const MlaShape& s, bool weights, bool bf16, Rng& rng) {
    const std::size_t D = s.dim, H = s.n_heads, P = s.qk_head_dim(), R = s.qk_rope_head_dim,
                      KVR = s.kv_lora_rank, QR = s.q_lora_rank,
                      KVB = H * (s.qk_nope_head_dim + s.v_head_dim), V = s.v_head_dim;
    auto draw = [&](std::size_t n, std::size_t fan_in) {
        auto v = weights ? random_floats(n, rng, -1.7f / std::sqrt(static_cast<float>(fan_in)),
                                         1.7f / std::sqrt(static_cast<float>(fan_in)))
                         : random_floats(n, rng, -1e-3f, 1e-3f);
        return bf16 ? representable<cuda::bf16>(v) : v;
    };
    auto gain = [&](std::size_t n) {
        auto v = weights ? random_floats(n, rng, 0.9f, 1.1f) : random_floats(n, rng, -1e-3f, 1e-3f);
        return bf16 ? representable<cuda::bf16>(v) : v;
    };
    MlaTensors t;
    if (QR > 0) {
        t.wq_a = draw(QR * D, D);
        t.q_norm = gain(QR);
        t.wq_b = draw(H * P * QR, QR);
    } else {
        t.wq = draw(H * P * D, D);
    }
    t.wkv_a = draw((KVR + R) * D, D);
    t.kv_norm = gain(KVR);
    t.wkv_b = draw(KVB * KVR, KVR);
    t.wo = draw(D * H * V, H * V);
    return t;
}

template <typename P>
P* ptr_or_null(std::vector<float>& v) {
    return v.empty() ? nullptr : v.data();
}

template <typename T>
void check_mla(const MlaShape& s, const std::string& name, int B, int T_len, double tol,
               uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    constexpr bool kBf16 = !std::is_same_v<T, float>;
    const int N = B * T_len, D = s.dim;
    const std::string tag = " " + name;
    Rng rng(seed);
    MlaTensors w = random_mla(s, true, kBf16, rng);
    MlaTensors g = random_mla(s, false, false, rng);
    const MlaTensors g0 = g;
    auto rep = [&](std::vector<float> v) { return kBf16 ? representable<cuda::bf16>(v) : v; };
    const std::size_t ND = static_cast<std::size_t>(N) * D;
    const auto x = rep(random_floats(ND, rng));
    const auto out0 = rep(random_floats(ND, rng));
    const auto dout = rep(random_floats(ND, rng));
    const auto dx0 = rep(random_floats(ND, rng, -1e-3f, 1e-3f));

    MlaWeights<float> cw;
    cw.wq = ptr_or_null<float>(w.wq);
    cw.wq_a = ptr_or_null<float>(w.wq_a);
    cw.q_norm = ptr_or_null<float>(w.q_norm);
    cw.wq_b = ptr_or_null<float>(w.wq_b);
    cw.wkv_a = w.wkv_a.data();
    cw.kv_norm = w.kv_norm.data();
    cw.wkv_b = w.wkv_b.data();
    cw.wo = w.wo.data();
    MlaGrads<float> cg;
    cg.wq = ptr_or_null<float>(g.wq);
    cg.wq_a = ptr_or_null<float>(g.wq_a);
    cg.q_norm = ptr_or_null<float>(g.q_norm);
    cg.wq_b = ptr_or_null<float>(g.wq_b);
    cg.wkv_a = g.wkv_a.data();
    cg.kv_norm = g.kv_norm.data();
    cg.wkv_b = g.wkv_b.data();
    cg.wo = g.wo.data();
    Mla<float> cpu(s, B, T_len);
    std::vector<float> out = out0, dx = dx0;
    cpu.forward(out.data(), x.data(), cw, B, T_len);
    cpu.backward(dx.data(), cg, dout.data(), x.data(), cw, B, T_len);

    // Device copies: weights in T, gradients fp32 (from their starting values).
    std::vector<Dev<T>> dw;
    std::vector<Dev<float>> dg;
    MlaTensors g_start = g0;
    for (auto* v : w.all()) dw.emplace_back(*v);
    for (auto* v : g_start.all()) dg.emplace_back(*v);
    auto wptr = [&](int i) -> const T* { return w.all()[i]->empty() ? nullptr : dw[i].ptr(); };
    auto gptr = [&](int i) -> float* { return g_start.all()[i]->empty() ? nullptr : dg[i].ptr(); };
    MlaWeights<T> gw;
    gw.wq = wptr(0);
    gw.wq_a = wptr(1);
    gw.q_norm = wptr(2);
    gw.wq_b = wptr(3);
    gw.wkv_a = wptr(4);
    gw.kv_norm = wptr(5);
    gw.wkv_b = wptr(6);
    gw.wo = wptr(7);
    MlaGrads<float> gg;
    gg.wq = gptr(0);
    gg.wq_a = gptr(1);
    gg.q_norm = gptr(2);
    gg.wq_b = gptr(3);
    gg.wkv_a = gptr(4);
    gg.kv_norm = gptr(5);
    gg.wkv_b = gptr(6);
    gg.wo = gptr(7);

    Blas blas;
    MlaGpu<T> gpu(s, B, T_len, blas);
    Dev<T> d_x(x), d_out(out0), d_dout(dout), d_dx(dx0);
    gpu.forward(d_out.ptr(), d_x.ptr(), gw, B, T_len);
    expect_close("mla out" + tag, d_out.get(), out, tol);
    gpu.backward(d_dx.ptr(), gg, d_dout.ptr(), d_x.ptr(), gw, B, T_len);
    expect_close("mla dx" + tag, d_dx.get(), dx, tol);
    const char* names[] = {"wq", "wq_a", "q_norm", "wq_b", "wkv_a", "kv_norm", "wkv_b", "wo"};
    const auto ref = g.all();
    for (int i = 0; i < 8; i++)
        if (!ref[i]->empty())
            expect_close(std::string("mla d ") + names[i] + tag, dg[i].get(), *ref[i], tol);
}

template <typename T>
void check_mla(const char* flavor, int B, int T_len, double tol, uint64_t seed) {
    check_mla<T>(mla_shape_for(flavor), flavor, B, T_len, tol, seed);
}

TEST(MlaGpu, TinyFp32) {
    check_mla<float>("moe_tiny", 2, 7, kTolFp32Long, 3700);
}
TEST(MlaGpu, DebugFp32) {
    check_mla<float>("moe_debug", 1, 9, kTolFp32Long, 3710);
}
TEST(MlaGpu, TinyBf16) {
    check_mla<bf16>("moe_tiny", 2, 7, kTolBf16, 3800);
}
TEST(MlaGpu, DebugBf16) {
    check_mla<bf16>("moe_debug", 1, 9, kTolBf16, 3810);
}
// T 37: two attention query tiles, the second partial.
TEST(MlaGpu, TableHeadsFp32) {
    check_mla<float>(table_heads_shape(), "table heads", 1, 37, kTolFp32Long, 3720);
}
TEST(MlaGpu, TableHeadsBf16) {
    check_mla<bf16>(table_heads_shape(), "table heads", 1, 37, kTolBf16, 3820);
}

TEST(MlaGpu, RefusesHeadsTheAttentionCannotTake) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Blas blas;
    MlaShape s = table_heads_shape();
    s.qk_nope_head_dim = 129;  // max(129 + 64, 128) = 193
    try {
        MlaGpu<float> mla(s, 1, 8, blas);
        FAIL() << "heads of 193 were accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("up to 192, got 193"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace agpt::cuda::test
