// Op-level tests of the CPU kernels: every forward/backward pair is checked against central
// finite differences in double precision, forwards against naive references, and backward
// functions for accumulating (+=) rather than overwriting.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/attention_decode.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/relu2.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/softcap.h"
#include "kernels/cpu/swiglu.h"

namespace agpt::cpu {
namespace {

using Vec = std::vector<double>;

Vec randn(Rng& rng, size_t n, double std = 1.0, double mean = 0.0) {
    Vec v(n);
    for (auto& x : v) x = mean + std * rng.normal();
    return v;
}

template <typename To, typename From>
std::vector<To> convert(const std::vector<From>& v) {
    return std::vector<To>(v.begin(), v.end());
}

double max_abs(const Vec& v) {
    double m = 0;
    for (double x : v) m = std::max(m, std::abs(x));
    return m;
}

// Largest |a - b| relative to max|b|, with a floor so that all-zero references compare
// absolutely.
template <typename A, typename B>
double max_rel_diff(const std::vector<A>& a, const std::vector<B>& b) {
    EXPECT_EQ(a.size(), b.size());
    double scale = 1e-300, diff = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        scale = std::max(scale, std::abs(static_cast<double>(b[i])));
        diff = std::max(diff, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
    }
    return diff / std::max(scale, 1e-3);
}

// ---------------------------------------------------------------------------------------------
// Generic gradient checker.
//
// An op is a set of named parameter buffers, a forward that returns its output for their
// current values, and a backward that, given dout, accumulates d(Σ dout ⊙ out)/dparam into
// grads. The checker compares each checked element with the central difference
//   Σ_i dout_i (out_i(p + ε) − out_i(p − ε)) / 2ε,
// subtracting the outputs before summing so that unchanged outputs cancel exactly and the
// rounding error stays that of the outputs the element touches, not that of the whole loss.

struct Param {
    std::string name;
    Vec* value;
};

using Forward = std::function<Vec()>;
using Backward = std::function<void(const Vec& dout, std::vector<Vec>& grads)>;

struct GradCheck {
    double eps = 1e-6;
    double rtol = 1e-6;
    // Elements checked per parameter (chosen at random); 0 checks all of them.
    int max_checks = 0;
    // Whether backward adds into grads (checked: two calls give twice the gradient, and a
    // prefilled buffer keeps its contents).
    bool accumulates = true;
    uint64_t seed = 1;
};

void check_gradients(const std::string& what, const std::vector<Param>& params,
                     const Forward& forward, const Backward& backward, const GradCheck& opt = {}) {
    SCOPED_TRACE(what);
    Rng rng(opt.seed);
    const Vec out0 = forward();
    const Vec dout = randn(rng, out0.size());

    auto zeros = [&] {
        std::vector<Vec> g;
        for (const auto& p : params) g.emplace_back(p.value->size(), 0.0);
        return g;
    };
    std::vector<Vec> grads = zeros();
    backward(dout, grads);

    if (opt.accumulates) {
        std::vector<Vec> twice = zeros();
        backward(dout, twice);
        backward(dout, twice);
        std::vector<Vec> pre = zeros();
        for (auto& g : pre) g = randn(rng, g.size());
        std::vector<Vec> added = pre;
        backward(dout, added);
        for (size_t p = 0; p < params.size(); ++p) {
            const double scale = std::max(max_abs(grads[p]), 1.0);
            for (size_t k = 0; k < grads[p].size(); ++k) {
                ASSERT_NEAR(twice[p][k], 2 * grads[p][k], 1e-12 * scale)
                    << params[p].name << "[" << k << "]: second backward call did not add";
                ASSERT_NEAR(added[p][k] - pre[p][k], grads[p][k], 1e-12 * scale)
                    << params[p].name << "[" << k << "]: backward overwrote its output";
            }
        }
    }

    for (size_t p = 0; p < params.size(); ++p) {
        Vec& x = *params[p].value;
        std::vector<size_t> idx;
        if (opt.max_checks == 0 || static_cast<size_t>(opt.max_checks) >= x.size()) {
            for (size_t k = 0; k < x.size(); ++k) idx.push_back(k);
        } else {
            for (int c = 0; c < opt.max_checks; ++c) idx.push_back(rng.below(x.size()));
        }
        Vec numeric(idx.size());
        for (size_t c = 0; c < idx.size(); ++c) {
            const double v = x[idx[c]];
            x[idx[c]] = v + opt.eps;
            const Vec plus = forward();
            x[idx[c]] = v - opt.eps;
            const Vec minus = forward();
            x[idx[c]] = v;
            double s = 0;
            for (size_t i = 0; i < plus.size(); ++i) s += dout[i] * (plus[i] - minus[i]);
            numeric[c] = s / (2 * opt.eps);
        }
        // Elements far below the parameter's typical gradient are compared against 1% of
        // its largest one: their differences carry the same absolute rounding error.
        const double floor = 1e-2 * max_abs(numeric);
        int failures = 0;
        double worst = 0;
        for (size_t c = 0; c < idx.size(); ++c) {
            const double a = grads[p][idx[c]], n = numeric[c];
            const double rel = std::abs(a - n) / std::max({std::abs(n), floor, 1e-300});
            worst = std::max(worst, rel);
            if (rel > opt.rtol && ++failures <= 5) {
                ADD_FAILURE() << params[p].name << "[" << idx[c] << "]: analytic " << a
                              << " numeric " << n << " (relative error " << rel << ")";
            }
        }
        EXPECT_EQ(failures, 0) << params[p].name << ": " << failures << " of " << idx.size()
                               << " elements off, worst relative error " << worst;
        EXPECT_GT(max_abs(grads[p]), 0.0) << params[p].name << ": gradient identically zero";
    }
}

// ---------------------------------------------------------------------------------------------
// Attention

struct AttnShape {
    int B, T, H, KV, hd;
    long row() const { return static_cast<long>(H + 2 * KV) * hd; }
    size_t qkv_size() const { return static_cast<size_t>(B) * T * row(); }
    size_t out_size() const { return static_cast<size_t>(B) * T * H * hd; }
    size_t lse_size() const { return static_cast<size_t>(B) * H * T; }
};

std::string name(const AttnShape& s) {
    return "B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " H=" + std::to_string(s.H) +
           " KV=" + std::to_string(s.KV) + " hd=" + std::to_string(s.hd);
}

// Direct O(T²) causal softmax attention, one query at a time; cap > 0 soft-caps the scaled
// scores to cap·tanh(s/cap) (with std::tanh).
void naive_attention(Vec& out, Vec& lse, const Vec& qkv, const AttnShape& s, double cap = 0) {
    out.assign(s.out_size(), 0.0);
    lse.assign(s.lse_size(), 0.0);
    const double scale = 1.0 / std::sqrt(static_cast<double>(s.hd));
    Vec sc(s.T);
    for (int b = 0; b < s.B; ++b)
        for (int h = 0; h < s.H; ++h) {
            const int g = h / (s.H / s.KV);
            for (int t = 0; t < s.T; ++t) {
                const double* q = &qkv[(static_cast<size_t>(b) * s.T + t) * s.row() + h * s.hd];
                double m = -INFINITY;
                for (int u = 0; u <= t; ++u) {
                    const double* k =
                        &qkv[(static_cast<size_t>(b) * s.T + u) * s.row() + (s.H + g) * s.hd];
                    double d = 0;
                    for (int i = 0; i < s.hd; ++i) d += q[i] * k[i];
                    sc[u] = d * scale;
                    if (cap > 0) sc[u] = cap * std::tanh(sc[u] / cap);
                    m = std::max(m, sc[u]);
                }
                double z = 0;
                for (int u = 0; u <= t; ++u) z += std::exp(sc[u] - m);
                const double l = m + std::log(z);
                lse[(static_cast<size_t>(b) * s.H + h) * s.T + t] = l;
                double* o = &out[(static_cast<size_t>(b) * s.T + t) * s.H * s.hd + h * s.hd];
                for (int u = 0; u <= t; ++u) {
                    const double p = std::exp(sc[u] - l);
                    const double* v = &qkv[(static_cast<size_t>(b) * s.T + u) * s.row() +
                                           (s.H + s.KV + g) * s.hd];
                    for (int i = 0; i < s.hd; ++i) o[i] += p * v[i];
                }
            }
        }
}

// Shapes around the 64-wide tiles: T=1, T a multiple of the tile, T just past one, several
// partial tiles; GQA groups of 2 and 4, H = KV, head sizes with and without a specialisation,
// and T long enough for the backward to take its keys in several passes (hd 64: 4 tiles each).
const AttnShape kAttnShapes[] = {
    {2, 1, 2, 1, 16},    {1, 64, 2, 2, 16},  {2, 70, 4, 2, 16},
    {1, 65, 3, 3, 8},    {1, 130, 4, 1, 32}, {1, 200, 2, 2, 64},
    {1, 129, 2, 1, 128}, {2, 37, 6, 3, 12},  {1, 300, 4, 2, 64},
};

TEST(Attention, ForwardMatchesNaiveSoftmax) {
    for (const auto& s : kAttnShapes) {
        SCOPED_TRACE(name(s));
        Rng rng(7);
        const Vec qkv = randn(rng, s.qkv_size());
        Vec out(s.out_size()), lse(s.lse_size()), ref_out, ref_lse;
        attention_forward(out.data(), lse.data(), qkv.data(), s.B, s.T, s.H, s.KV, s.hd);
        naive_attention(ref_out, ref_lse, qkv, s);
        EXPECT_LT(max_rel_diff(out, ref_out), 1e-13);
        EXPECT_LT(max_rel_diff(lse, ref_lse), 1e-13);
    }
}

TEST(Attention, LseIsLogSumExpOfScaledScores) {
    // With q = 0 every visible score is 0, so lse(t) = log(t + 1) exactly in real arithmetic.
    const AttnShape s{1, 150, 2, 1, 16};
    Rng rng(3);
    Vec qkv = randn(rng, s.qkv_size());
    for (int t = 0; t < s.T; ++t)
        for (int i = 0; i < s.H * s.hd; ++i) qkv[t * s.row() + i] = 0.0;
    Vec out(s.out_size()), lse(s.lse_size());
    attention_forward(out.data(), lse.data(), qkv.data(), s.B, s.T, s.H, s.KV, s.hd);
    for (int h = 0; h < s.H; ++h)
        for (int t = 0; t < s.T; ++t)
            EXPECT_NEAR(lse[h * s.T + t], std::log(t + 1.0), 1e-13) << "h=" << h << " t=" << t;
    // ...and the output is the running mean of the values.
    for (int t : {0, 63, 64, 149}) {
        for (int i = 0; i < s.hd; ++i) {
            double mean = 0;
            for (int u = 0; u <= t; ++u) mean += qkv[u * s.row() + (s.H + s.KV) * s.hd + i];
            mean /= t + 1;
            EXPECT_NEAR(out[t * s.H * s.hd + i], mean, 1e-13) << "t=" << t;
        }
    }
}

TEST(Attention, FloatCloseToDouble) {
    for (const auto& s : kAttnShapes) {
        SCOPED_TRACE(name(s));
        Rng rng(11);
        const Vec qkv = randn(rng, s.qkv_size());
        const Vec dout = randn(rng, s.out_size());
        Vec out(s.out_size()), lse(s.lse_size()), dqkv(s.qkv_size(), 0.0);
        attention_forward(out.data(), lse.data(), qkv.data(), s.B, s.T, s.H, s.KV, s.hd);
        attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), s.B, s.T,
                           s.H, s.KV, s.hd);
        const auto qkv_f = convert<float>(qkv), dout_f = convert<float>(dout);
        std::vector<float> out_f(s.out_size()), lse_f(s.lse_size()), dqkv_f(s.qkv_size(), 0.0f);
        attention_forward(out_f.data(), lse_f.data(), qkv_f.data(), s.B, s.T, s.H, s.KV, s.hd);
        attention_backward(dqkv_f.data(), dout_f.data(), qkv_f.data(), out_f.data(), lse_f.data(),
                           s.B, s.T, s.H, s.KV, s.hd);
        EXPECT_LT(max_rel_diff(out_f, out), 1e-5);
        EXPECT_LT(max_rel_diff(lse_f, lse), 1e-5);
        EXPECT_LT(max_rel_diff(dqkv_f, dqkv), 1e-4);
    }
}

void check_attention_gradients(const AttnShape& s, int max_checks, double cap = 0,
                               double std = 1.0) {
    Rng rng(5);
    Vec qkv = randn(rng, s.qkv_size(), std);
    Vec lse(s.lse_size());
    auto forward = [&] {
        Vec out(s.out_size());
        attention_forward(out.data(), lse.data(), qkv.data(), s.B, s.T, s.H, s.KV, s.hd, cap);
        return out;
    };
    auto backward = [&](const Vec& dout, std::vector<Vec>& g) {
        const Vec out = forward();
        attention_backward(g[0].data(), dout.data(), qkv.data(), out.data(), lse.data(), s.B, s.T,
                           s.H, s.KV, s.hd, cap);
    };
    GradCheck opt;
    opt.max_checks = max_checks;
    check_gradients("attention " + name(s) + " softcap " + std::to_string(cap), {{"qkv", &qkv}},
                    forward, backward, opt);
}

TEST(AttentionGrad, GroupedQueryHeads) {
    check_attention_gradients({2, 70, 4, 2, 16}, 600);
}
TEST(AttentionGrad, MultiQueryThreeTiles) {
    check_attention_gradients({1, 130, 4, 1, 32}, 400);
}
TEST(AttentionGrad, EqualHeadsGenericHeadDim) {
    check_attention_gradients({1, 67, 3, 3, 8}, 600);
}
TEST(AttentionGrad, SingleToken) {
    check_attention_gradients({2, 1, 4, 2, 16}, 0);
}
// hd 128 makes the backward take its keys two tiles per pass: T = 200 spans two passes.
TEST(AttentionGrad, HeadDim128SeveralKeyPasses) {
    check_attention_gradients({1, 200, 2, 1, 128}, 300);
}

// ---------------------------------------------------------------------------------------------
// Attention-logit soft-capping: cap·tanh(s/cap) on the scaled scores, before the causal softmax.

TEST(AttentionSoftcap, TanhVecMatchesStdTanh) {
    for (double u = -30; u <= 30; u += 0.01) {
        EXPECT_NEAR(tanh_vec(u), std::tanh(u), 5e-16) << u;
        EXPECT_NEAR(tanh_vec(static_cast<float>(u)), std::tanh(u), 2e-7) << u;
    }
    for (double u : {-1e30, -800.0, 800.0, 1e30}) EXPECT_EQ(tanh_vec(u), u > 0 ? 1.0 : -1.0);
    EXPECT_EQ(softcap_vec(-HUGE_VAL, 30.0), -HUGE_VAL);
    EXPECT_EQ(softcap_vec(-HUGE_VALF, 30.0f), -HUGE_VALF);
    EXPECT_EQ(softcap_grad_from_output(-HUGE_VAL, 30.0), 0.0);
    EXPECT_NEAR(softcap_vec(1e6, 30.0), 30.0, 1e-12);
}

TEST(AttentionSoftcap, ForwardMatchesNaiveCappedSoftmax) {
    for (const auto& s : kAttnShapes) {
        SCOPED_TRACE(name(s));
        Rng rng(7);
        const Vec qkv = randn(rng, s.qkv_size(), 2.0);  // scores ~ N(0, 16): the cap bites
        for (double cap : {1.5, 30.0}) {
            Vec out(s.out_size()), lse(s.lse_size()), ref_out, ref_lse, plain_out, plain_lse;
            attention_forward(out.data(), lse.data(), qkv.data(), s.B, s.T, s.H, s.KV, s.hd, cap);
            naive_attention(ref_out, ref_lse, qkv, s, cap);
            EXPECT_LT(max_rel_diff(out, ref_out), 1e-13) << "cap " << cap;
            EXPECT_LT(max_rel_diff(lse, ref_lse), 1e-13) << "cap " << cap;
            naive_attention(plain_out, plain_lse, qkv, s);
            if (s.T > 1 && cap < 2) {  // the cap changes the result (the test can tell)
                EXPECT_GT(max_rel_diff(out, plain_out), 1e-2);
            }
        }
    }
}

TEST(AttentionSoftcap, FloatCloseToDouble) {
    for (const auto& s : kAttnShapes) {
        SCOPED_TRACE(name(s));
        Rng rng(11);
        const Vec qkv = randn(rng, s.qkv_size(), 2.0);
        const Vec dout = randn(rng, s.out_size());
        const double cap = 3.0;
        Vec out(s.out_size()), lse(s.lse_size()), dqkv(s.qkv_size(), 0.0);
        attention_forward(out.data(), lse.data(), qkv.data(), s.B, s.T, s.H, s.KV, s.hd, cap);
        attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), s.B, s.T,
                           s.H, s.KV, s.hd, cap);
        const auto qkv_f = convert<float>(qkv), dout_f = convert<float>(dout);
        std::vector<float> out_f(s.out_size()), lse_f(s.lse_size()), dqkv_f(s.qkv_size(), 0.0f);
        attention_forward(out_f.data(), lse_f.data(), qkv_f.data(), s.B, s.T, s.H, s.KV, s.hd,
                          float(cap));
        attention_backward(dqkv_f.data(), dout_f.data(), qkv_f.data(), out_f.data(), lse_f.data(),
                           s.B, s.T, s.H, s.KV, s.hd, float(cap));
        EXPECT_LT(max_rel_diff(out_f, out), 1e-5);
        EXPECT_LT(max_rel_diff(lse_f, lse), 1e-5);
        EXPECT_LT(max_rel_diff(dqkv_f, dqkv), 1e-4);
    }
}

// Finite differences in double through the capped forward and its backward, with scores large
// enough that tanh saturates for some of them (std 2: s ~ N(0, 16) for cap 1.5 and 3).
TEST(AttentionSoftcapGrad, GroupedQueryHeads) {
    check_attention_gradients({2, 70, 4, 2, 16}, 600, 1.5, 2.0);
}
TEST(AttentionSoftcapGrad, MultiQueryThreeTiles) {
    check_attention_gradients({1, 130, 4, 1, 32}, 150, 3.0, 2.0);
}
TEST(AttentionSoftcapGrad, GenericHeadDimCap30) {
    check_attention_gradients({1, 67, 3, 3, 8}, 600, 30.0, 4.0);
}
TEST(AttentionSoftcapGrad, HeadDim128SeveralKeyPasses) {
    check_attention_gradients({1, 200, 2, 1, 128}, 100, 2.0, 1.0);
}

TEST(AttentionSoftcap, DecodeMatchesFullAttentionRows) {
    // The cached decode path caps like the tiled forward: M new queries after `past` cached ones
    // equal rows past..past+M-1 of the full forward.
    const AttnShape s{1, 40, 4, 2, 16};
    Rng rng(19);
    const Vec qkv = randn(rng, s.qkv_size(), 2.0);
    const double cap = 2.0;
    Vec out(s.out_size()), lse(s.lse_size());
    attention_forward(out.data(), lse.data(), qkv.data(), 1, s.T, s.H, s.KV, s.hd, cap);
    const int past = 29, M = s.T - past, row = static_cast<int>(s.row());
    Vec dec(static_cast<size_t>(M) * s.H * s.hd);
    attention_decode(dec.data(), qkv.data() + past * s.row(), row, qkv.data() + s.H * s.hd,
                     qkv.data() + (s.H + s.KV) * s.hd, row, M, past, s.H, s.KV, s.hd, cap);
    const Vec want(out.begin() + past * s.H * s.hd, out.end());
    EXPECT_LT(max_rel_diff(dec, want), 1e-13);
}

TEST(AttentionSoftcap, BitIdenticalAcrossThreadCounts) {
    const AttnShape s{2, 200, 4, 2, 32};
    Rng rng(13);
    const auto qkv = convert<float>(randn(rng, s.qkv_size(), 2.0));
    const auto dout = convert<float>(randn(rng, s.out_size()));
    auto run = [&](int threads) {
        const int saved = omp_get_max_threads();
        omp_set_num_threads(threads);
        std::vector<float> out(s.out_size()), lse(s.lse_size()), dqkv(s.qkv_size(), 0.0f);
        attention_forward(out.data(), lse.data(), qkv.data(), s.B, s.T, s.H, s.KV, s.hd, 30.0f);
        attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), s.B, s.T,
                           s.H, s.KV, s.hd, 30.0f);
        omp_set_num_threads(saved);
        out.insert(out.end(), dqkv.begin(), dqkv.end());
        return out;
    };
    const auto one = run(1), three = run(3);
    EXPECT_EQ(std::memcmp(one.data(), three.data(), one.size() * sizeof(float)), 0);
}

TEST(AttentionSoftcap, RejectsNegativeCap) {
    std::vector<float> qkv(2 * 3 * 16), out(2 * 16), lse(2);
    EXPECT_THROW(attention_forward(out.data(), lse.data(), qkv.data(), 1, 2, 1, 1, 16, -1.0f),
                 Error);
}

template <typename T>
struct AttnRun {
    std::vector<T> out, lse, dqkv;
};

template <typename T>
AttnRun<T> run_attention(const std::vector<T>& qkv, const std::vector<T>& dout, const AttnShape& s,
                         int threads) {
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    AttnRun<T> r{std::vector<T>(s.out_size()), std::vector<T>(s.lse_size()),
                 std::vector<T>(s.qkv_size(), T(0))};
    attention_forward(r.out.data(), r.lse.data(), qkv.data(), s.B, s.T, s.H, s.KV, s.hd);
    attention_backward(r.dqkv.data(), dout.data(), qkv.data(), r.out.data(), r.lse.data(), s.B, s.T,
                       s.H, s.KV, s.hd);
    omp_set_num_threads(saved);
    return r;
}

template <typename T>
bool bit_equal(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

TEST(Attention, BitIdenticalAcrossThreadCounts) {
    for (const AttnShape s : {AttnShape{2, 200, 4, 2, 32}, AttnShape{3, 130, 2, 1, 16},
                              AttnShape{1, 200, 3, 3, 24}, AttnShape{2, 300, 2, 1, 64}}) {
        SCOPED_TRACE(name(s));
        Rng rng(13);
        const auto qkv = convert<float>(randn(rng, s.qkv_size()));
        const auto dout = convert<float>(randn(rng, s.out_size()));
        const auto one = run_attention(qkv, dout, s, 1);
        for (int threads : {2, 3}) {
            const auto many = run_attention(qkv, dout, s, threads);
            EXPECT_TRUE(bit_equal(one.out, many.out)) << threads << " threads";
            EXPECT_TRUE(bit_equal(one.lse, many.lse)) << threads << " threads";
            EXPECT_TRUE(bit_equal(one.dqkv, many.dqkv)) << threads << " threads";
        }
    }
}

TEST(Attention, RejectsKvHeadsThatDoNotDivideHeads) {
    std::vector<float> qkv(2 * (3 + 4) * 16), out(2 * 3 * 16), lse(2 * 3);
    EXPECT_THROW(attention_forward(out.data(), lse.data(), qkv.data(), 1, 2, 3, 2, 16), Error);
}

// seq_len 8192 with memory linear in T: spot-check late queries against the naive formula.
TEST(Attention, LongSequence8192) {
    const AttnShape s{1, 8192, 2, 1, 16};
    Rng rng(17);
    const auto qkv = convert<float>(randn(rng, s.qkv_size()));
    const auto dout = convert<float>(randn(rng, s.out_size()));
    const auto r = run_attention(qkv, dout, s, omp_get_max_threads());
    for (float x : r.dqkv) ASSERT_TRUE(std::isfinite(x));
    const double scale = 1.0 / std::sqrt(16.0);
    for (int h = 0; h < s.H; ++h)
        for (int t : {0, 4095, 8191}) {
            Vec sc(t + 1);
            double m = -INFINITY;
            for (int u = 0; u <= t; ++u) {
                double d = 0;
                for (int i = 0; i < s.hd; ++i)
                    d +=
                        double(qkv[t * s.row() + h * s.hd + i]) * qkv[u * s.row() + s.H * s.hd + i];
                sc[u] = d * scale;
                m = std::max(m, sc[u]);
            }
            double z = 0;
            for (double x : sc) z += std::exp(x - m);
            EXPECT_NEAR(r.lse[h * s.T + t], m + std::log(z), 1e-4) << "h=" << h << " t=" << t;
            for (int i = 0; i < s.hd; ++i) {
                double o = 0;
                for (int u = 0; u <= t; ++u)
                    o += std::exp(sc[u] - m) / z * qkv[u * s.row() + (s.H + s.KV) * s.hd + i];
                EXPECT_NEAR(r.out[t * s.H * s.hd + h * s.hd + i], o, 1e-4) << "t=" << t;
            }
        }
}

// ---------------------------------------------------------------------------------------------
// GEMM

TEST(KernelGemm, MatchesNaiveForEveryTranspose) {
    const int M = 5, N = 4, K = 6, lda = 9, ldb = 8, ldc = 7;
    Rng rng(21);
    const Vec A = randn(rng, 9 * 9), Bm = randn(rng, 9 * 9), C0 = randn(rng, M * ldc);
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            Vec C = C0;
            gemm(ta, tb, M, N, K, 0.7, A.data(), lda, Bm.data(), ldb, 0.3, C.data(), ldc);
            for (int i = 0; i < M; ++i)
                for (int j = 0; j < N; ++j) {
                    double s = 0;
                    for (int k = 0; k < K; ++k)
                        s += (ta ? A[k * lda + i] : A[i * lda + k]) *
                             (tb ? Bm[j * ldb + k] : Bm[k * ldb + j]);
                    EXPECT_NEAR(C[i * ldc + j], 0.7 * s + 0.3 * C0[i * ldc + j], 1e-13)
                        << "ta=" << ta << " tb=" << tb << " i=" << i << " j=" << j;
                }
        }
}

TEST(KernelGemm, MatmulForwardAndAccumulate) {
    const int M = 4, K = 5, N = 3;
    Rng rng(22);
    const Vec inp = randn(rng, M * K), w = randn(rng, N * K), c = randn(rng, M * N);
    Vec out(M * N, 99.0), acc = c;
    matmul_forward(out.data(), inp.data(), w.data(), M, K, N);
    matmul_forward(acc.data(), inp.data(), w.data(), M, K, N, true);
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            double s = 0;
            for (int k = 0; k < K; ++k) s += inp[i * K + k] * w[j * K + k];
            EXPECT_NEAR(out[i * N + j], s, 1e-13);
            EXPECT_NEAR(acc[i * N + j], c[i * N + j] + s, 1e-13);
        }
}

TEST(KernelGemm, MatmulGradient) {
    const int M = 6, K = 5, N = 4;
    Rng rng(23);
    Vec inp = randn(rng, M * K), w = randn(rng, N * K);
    auto forward = [&] {
        Vec out(M * N);
        matmul_forward(out.data(), inp.data(), w.data(), M, K, N);
        return out;
    };
    auto backward = [&](const Vec& dout, std::vector<Vec>& g) {
        matmul_backward(g[0].data(), g[1].data(), dout.data(), inp.data(), w.data(), M, K, N);
    };
    check_gradients("matmul", {{"inp", &inp}, {"weight", &w}}, forward, backward);

    // A null output is skipped and leaves the other unchanged.
    const Vec dout = randn(rng, M * N);
    Vec dinp(M * K, 0.0), dw(N * K, 0.0), dinp_only(M * K, 0.0), dw_only(N * K, 0.0);
    matmul_backward(dinp.data(), dw.data(), dout.data(), inp.data(), w.data(), M, K, N);
    matmul_backward(dinp_only.data(), static_cast<double*>(nullptr), dout.data(), inp.data(),
                    w.data(), M, K, N);
    matmul_backward(static_cast<double*>(nullptr), dw_only.data(), dout.data(), inp.data(),
                    w.data(), M, K, N);
    EXPECT_EQ(dinp, dinp_only);
    EXPECT_EQ(dw, dw_only);
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

TEST(KernelRmsNorm, ForwardMatchesDefinition) {
    const int N = 3, C = 7;
    const double eps = 1e-5;
    Rng rng(31);
    const Vec inp = randn(rng, N * C), w = randn(rng, C, 0.2, 1.0);
    Vec out(N * C), rstd(N);
    rmsnorm_forward(out.data(), rstd.data(), inp.data(), w.data(), N, C, eps);
    for (int n = 0; n < N; ++n) {
        double ms = 0;
        for (int c = 0; c < C; ++c) ms += inp[n * C + c] * inp[n * C + c];
        const double r = 1.0 / std::sqrt(ms / C + eps);
        EXPECT_NEAR(rstd[n], r, 1e-14 * r);
        for (int c = 0; c < C; ++c) EXPECT_NEAR(out[n * C + c], inp[n * C + c] * r * w[c], 1e-14);
    }
}

TEST(KernelRmsNorm, Gradient) {
    const int N = 5, C = 9;
    const double eps = 1e-5;
    Rng rng(32);
    Vec inp = randn(rng, N * C), w = randn(rng, C, 0.2, 1.0), rstd(N);
    auto forward = [&] {
        Vec out(N * C);
        rmsnorm_forward(out.data(), rstd.data(), inp.data(), w.data(), N, C, eps);
        return out;
    };
    auto backward = [&](const Vec& dout, std::vector<Vec>& g) {
        forward();
        rmsnorm_backward(g[0].data(), g[1].data(), dout.data(), inp.data(), w.data(), rstd.data(),
                         N, C);
    };
    check_gradients("rmsnorm", {{"inp", &inp}, {"weight", &w}}, forward, backward);
}

// ---------------------------------------------------------------------------------------------
// RoPE (rotate_half layout)

TEST(KernelRope, TablesAndRotationMatchDefinition) {
    const int B = 2, T = 6, n_heads = 3, hd = 8, stride = 5 * hd;
    const double theta = 10000.0;
    Vec cos_t(T * hd / 2), sin_t(T * hd / 2);
    rope_tables(cos_t.data(), sin_t.data(), T, hd, theta);
    for (int t = 0; t < T; ++t)
        for (int i = 0; i < hd / 2; ++i) {
            const double a = t * std::pow(theta, -2.0 * i / hd);
            EXPECT_NEAR(cos_t[t * hd / 2 + i], std::cos(a), 1e-14);
            EXPECT_NEAR(sin_t[t * hd / 2 + i], std::sin(a), 1e-14);
        }
    Rng rng(41);
    const Vec x = randn(rng, B * T * stride);
    Vec y = x;
    rope_forward(y.data(), cos_t.data(), sin_t.data(), B, T, n_heads, hd, stride);
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t) {
            const double* r = &x[(b * T + t) * stride];
            const double* o = &y[(b * T + t) * stride];
            for (int h = 0; h < n_heads; ++h)
                for (int i = 0; i < hd / 2; ++i) {
                    const double a = t * std::pow(theta, -2.0 * i / hd);
                    const double x1 = r[h * hd + i], x2 = r[h * hd + i + hd / 2];
                    EXPECT_NEAR(o[h * hd + i], x1 * std::cos(a) - x2 * std::sin(a), 1e-13);
                    EXPECT_NEAR(o[h * hd + i + hd / 2], x2 * std::cos(a) + x1 * std::sin(a), 1e-13);
                }
            for (int c = n_heads * hd; c < stride; ++c) EXPECT_EQ(o[c], r[c]) << "c=" << c;
        }
    // The backward rotation undoes the forward one.
    rope_backward(y.data(), cos_t.data(), sin_t.data(), B, T, n_heads, hd, stride);
    EXPECT_LT(max_rel_diff(y, x), 1e-14);
}

TEST(KernelRope, Gradient) {
    const int B = 2, T = 5, n_heads = 3, hd = 8, stride = 5 * hd;
    Vec cos_t(T * hd / 2), sin_t(T * hd / 2);
    rope_tables(cos_t.data(), sin_t.data(), T, hd, 500000.0);
    Rng rng(42);
    Vec x = randn(rng, B * T * stride);
    auto forward = [&] {
        Vec y = x;
        rope_forward(y.data(), cos_t.data(), sin_t.data(), B, T, n_heads, hd, stride);
        return y;
    };
    // rope_backward works in place on dx rather than accumulating.
    auto backward = [&](const Vec& dout, std::vector<Vec>& g) {
        Vec d = dout;
        rope_backward(d.data(), cos_t.data(), sin_t.data(), B, T, n_heads, hd, stride);
        for (size_t i = 0; i < d.size(); ++i) g[0][i] += d[i];
    };
    GradCheck opt;
    opt.accumulates = false;
    check_gradients("rope", {{"x", &x}}, forward, backward, opt);
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

TEST(KernelSwiglu, ForwardMatchesDefinition) {
    const int N = 3, F = 5;
    Rng rng(51);
    const Vec h13 = randn(rng, N * 2 * F, 2.0);
    Vec out(N * F);
    swiglu_forward(out.data(), h13.data(), N, F);
    for (int n = 0; n < N; ++n)
        for (int f = 0; f < F; ++f) {
            const double a = h13[n * 2 * F + f], b = h13[n * 2 * F + F + f];
            EXPECT_NEAR(out[n * F + f], a / (1 + std::exp(-a)) * b, 1e-14);
        }
}

TEST(KernelSwiglu, Gradient) {
    const int N = 4, F = 6;
    Rng rng(52);
    Vec h13 = randn(rng, N * 2 * F, 2.0);
    auto forward = [&] {
        Vec out(N * F);
        swiglu_forward(out.data(), h13.data(), N, F);
        return out;
    };
    auto backward = [&](const Vec& dout, std::vector<Vec>& g) {
        swiglu_backward(g[0].data(), dout.data(), h13.data(), N, F);
    };
    check_gradients("swiglu", {{"h13", &h13}}, forward, backward);
}

// ---------------------------------------------------------------------------------------------
// ReLU²

TEST(KernelRelu2, ForwardMatchesDefinition) {
    const int N = 3, F = 5;
    Rng rng(53);
    const Vec h = randn(rng, N * F, 2.0);
    Vec out(N * F);
    relu2_forward(out.data(), h.data(), N, F);
    for (int i = 0; i < N * F; ++i) EXPECT_EQ(out[i], h[i] > 0 ? h[i] * h[i] : 0.0) << i;
}

TEST(KernelRelu2, Gradient) {
    const int N = 4, F = 7;
    Rng rng(54);
    Vec h = randn(rng, N * F, 2.0);
    auto forward = [&] {
        Vec out(N * F);
        relu2_forward(out.data(), h.data(), N, F);
        return out;
    };
    auto backward = [&](const Vec& dout, std::vector<Vec>& g) {
        relu2_backward(g[0].data(), dout.data(), h.data(), N, F);
    };
    check_gradients("relu2", {{"h", &h}}, forward, backward);
}

// ---------------------------------------------------------------------------------------------
// Per-head RMSNorm (QK-norm): heads of C inside rows of a wider stride.

TEST(KernelRmsNormHeads, ForwardMatchesDefinitionAndWorksInPlace) {
    const int N = 3, heads = 4, C = 8;
    const long in_stride = 7 * C, out_stride = 5 * C;  // heads sit at the start of each row
    const double eps = 1e-6;
    Rng rng(33);
    const Vec inp = randn(rng, N * in_stride), w = randn(rng, C, 0.2, 1.0);
    Vec out(N * out_stride, 7.0), rstd(N * heads);
    rmsnorm_heads_forward(out.data(), out_stride, rstd.data(), inp.data(), in_stride, w.data(), N,
                          heads, C, eps);
    for (int n = 0; n < N; ++n) {
        for (int h = 0; h < heads; ++h) {
            const double* x = &inp[n * in_stride + h * C];
            double ms = 0;
            for (int c = 0; c < C; ++c) ms += x[c] * x[c];
            const double r = 1.0 / std::sqrt(ms / C + eps);
            EXPECT_NEAR(rstd[n * heads + h], r, 1e-14 * r);
            for (int c = 0; c < C; ++c)
                EXPECT_NEAR(out[n * out_stride + h * C + c], x[c] * r * w[c], 1e-14);
        }
        for (long c = heads * C; c < out_stride; ++c) EXPECT_EQ(out[n * out_stride + c], 7.0);
    }
    // In place (out = inp, same stride) gives the same values.
    Vec inplace = inp, rstd2(N * heads);
    rmsnorm_heads_forward(inplace.data(), in_stride, rstd2.data(), inplace.data(), in_stride,
                          w.data(), N, heads, C, eps);
    for (int n = 0; n < N; ++n)
        for (int c = 0; c < heads * C; ++c)
            EXPECT_EQ(inplace[n * in_stride + c], out[n * out_stride + c]);
    // heads = 1, stride C is rmsnorm_forward.
    Vec a(N * C), b(N * C), ra(N), rb(N);
    rmsnorm_forward(a.data(), ra.data(), inp.data(), w.data(), N, C, eps);
    rmsnorm_heads_forward(b.data(), C, rb.data(), inp.data(), C, w.data(), N, 1, C, eps);
    EXPECT_EQ(a, b);
}

TEST(KernelRmsNormHeads, Gradient) {
    // 70 rows of (n, head): more than one 64-row block of the dweight reduction.
    const int N = 14, heads = 5, C = 6;
    const long in_stride = 6 * C, out_stride = 8 * C;
    const double eps = 1e-5;
    Rng rng(34);
    Vec inp = randn(rng, N * in_stride), w = randn(rng, C, 0.2, 1.0), rstd(N * heads);
    auto forward = [&] {
        Vec out(N * out_stride, 0.0);
        rmsnorm_heads_forward(out.data(), out_stride, rstd.data(), inp.data(), in_stride, w.data(),
                              N, heads, C, eps);
        return out;
    };
    auto backward = [&](const Vec& dout, std::vector<Vec>& g) {
        forward();
        rmsnorm_heads_backward(g[0].data(), in_stride, g[1].data(), dout.data(), out_stride,
                               inp.data(), in_stride, w.data(), rstd.data(), N, heads, C);
    };
    // Elements of inp past the heads get no gradient: checked below, so the checker's "gradient
    // identically zero" rule only sees the whole buffer.
    check_gradients("rmsnorm_heads", {{"inp", &inp}, {"weight", &w}}, forward, backward);
    Vec din(N * in_stride, 0.0), dw(C, 0.0);
    const Vec dout = randn(rng, N * out_stride);
    forward();
    rmsnorm_heads_backward(din.data(), in_stride, dw.data(), dout.data(), out_stride, inp.data(),
                           in_stride, w.data(), rstd.data(), N, heads, C);
    for (int n = 0; n < N; ++n)
        for (long c = heads * C; c < in_stride; ++c) EXPECT_EQ(din[n * in_stride + c], 0.0);
}

// ---------------------------------------------------------------------------------------------
// Embedding

TEST(KernelEmbedding, ForwardAndGradientWithRepeatedTokens) {
    const int V = 6, C = 4;
    const std::vector<int32_t> tokens = {1, 3, 1, 0, 5, 3, 1, 2, 1};
    const int N = static_cast<int>(tokens.size());
    Rng rng(61);
    Vec table = randn(rng, V * C);
    auto forward = [&] {
        Vec out(N * C);
        embedding_forward(out.data(), tokens.data(), table.data(), N, C);
        return out;
    };
    const Vec out = forward();
    for (int n = 0; n < N; ++n)
        for (int c = 0; c < C; ++c) EXPECT_EQ(out[n * C + c], table[tokens[n] * C + c]);
    auto backward = [&](const Vec& dout, std::vector<Vec>& g) {
        embedding_backward(g[0].data(), dout.data(), tokens.data(), N, C);
    };
    check_gradients("embedding", {{"table", &table}}, forward, backward);
    // Row 4 is never looked up.
    Vec dtable(V * C, 0.0);
    const Vec dout = randn(rng, N * C);
    embedding_backward(dtable.data(), dout.data(), tokens.data(), N, C);
    for (int c = 0; c < C; ++c) EXPECT_EQ(dtable[4 * C + c], 0.0);
}

// ---------------------------------------------------------------------------------------------
// LM head + cross-entropy

double naive_cross_entropy(const Vec& x, const Vec& w, const std::vector<int32_t>& targets, int C,
                           int V, double cap = 0) {
    double total = 0;
    for (size_t n = 0; n < targets.size(); ++n) {
        if (targets[n] < 0) continue;
        Vec logits(V);
        double m = -INFINITY;
        for (int v = 0; v < V; ++v) {
            double s = 0;
            for (int c = 0; c < C; ++c) s += x[n * C + c] * w[v * C + c];
            logits[v] = cap > 0 ? cap * std::tanh(s / cap) : s;
            m = std::max(m, s);
        }
        double z = 0;
        for (double l : logits) z += std::exp(l - m);
        total += m + std::log(z) - logits[targets[n]];
    }
    return total;
}

TEST(KernelCrossEntropy, LossMatchesNaiveLogSoftmax) {
    const std::vector<int32_t> targets = {2, -1, 0, 6, 3, -1, 1, 4, 5, 2};
    const int N = 10, C = 6, V = 7;
    Rng rng(71);
    const Vec x = randn(rng, N * C), w = randn(rng, V * C);
    const double ref = naive_cross_entropy(x, w, targets, C, V);
    for (int chunk : {1, 3, 4, 10, 16}) {
        Vec scratch(lm_head_scratch_size(chunk, V));
        const double loss = lm_head_cross_entropy(
            static_cast<double*>(nullptr), static_cast<double*>(nullptr), x.data(), w.data(),
            targets.data(), N, C, V, 1.0, scratch.data(), chunk);
        EXPECT_NEAR(loss, ref, 1e-12 * ref) << "chunk=" << chunk;
        // Computing gradients does not change the loss.
        Vec dx(N * C, 0.0), dw(V * C, 0.0);
        const double loss2 =
            lm_head_cross_entropy(dx.data(), dw.data(), x.data(), w.data(), targets.data(), N, C, V,
                                  0.5, scratch.data(), chunk);
        EXPECT_NEAR(loss2, ref, 1e-12 * ref) << "chunk=" << chunk;
    }
}

TEST(KernelCrossEntropy, GradientWithIgnoredTargetsAndRaggedChunks) {
    const std::vector<int32_t> targets = {2, -1, 0, 6, 3, -1, 1, 4, 5, 2};
    const int N = 10, C = 6, V = 7;
    for (int chunk : {3, 4, 10}) {
        Rng rng(72);
        Vec x = randn(rng, N * C), w = randn(rng, V * C);
        Vec scratch(lm_head_scratch_size(chunk, V));
        auto forward = [&] {
            const double loss = lm_head_cross_entropy(
                static_cast<double*>(nullptr), static_cast<double*>(nullptr), x.data(), w.data(),
                targets.data(), N, C, V, 1.0, scratch.data(), chunk);
            return Vec{loss};
        };
        // dout (a single number) is the grad_scale.
        auto backward = [&](const Vec& dout, std::vector<Vec>& g) {
            lm_head_cross_entropy(g[0].data(), g[1].data(), x.data(), w.data(), targets.data(), N,
                                  C, V, dout[0], scratch.data(), chunk);
        };
        GradCheck opt;
        opt.eps = 1e-5;  // the loss is one rounded sum; a larger step keeps its rounding small
        check_gradients("lm_head_cross_entropy chunk=" + std::to_string(chunk),
                        {{"x", &x}, {"weight", &w}}, forward, backward, opt);

        // Ignored tokens get no gradient.
        Vec dx(N * C, 0.0), dw(V * C, 0.0);
        lm_head_cross_entropy(dx.data(), dw.data(), x.data(), w.data(), targets.data(), N, C, V,
                              1.0, scratch.data(), chunk);
        for (int n : {1, 5})
            for (int c = 0; c < C; ++c) EXPECT_EQ(dx[n * C + c], 0.0) << "n=" << n;
    }
}

// Final-logit soft-capping: the loss of cap·tanh(z/cap), fused into the chunked head.
TEST(KernelCrossEntropySoftcap, LossMatchesNaiveCappedLogSoftmax) {
    const std::vector<int32_t> targets = {2, -1, 0, 6, 3, -1, 1, 4, 5, 2};
    const int N = 10, C = 6, V = 7;
    Rng rng(73);
    const Vec x = randn(rng, N * C, 1.5), w = randn(rng, V * C, 1.5);  // logits ~ N(0, 30)
    for (double cap : {2.0, 30.0}) {
        const double ref = naive_cross_entropy(x, w, targets, C, V, cap);
        EXPECT_GT(std::abs(ref - naive_cross_entropy(x, w, targets, C, V)), 1e-3 * ref);
        for (int chunk : {1, 4, 16}) {
            Vec scratch(lm_head_scratch_size(chunk, V));
            const double loss = lm_head_cross_entropy(
                static_cast<double*>(nullptr), static_cast<double*>(nullptr), x.data(), w.data(),
                targets.data(), N, C, V, 1.0, scratch.data(), chunk, cap);
            EXPECT_NEAR(loss, ref, 1e-12 * ref) << "cap=" << cap << " chunk=" << chunk;
            Vec dx(N * C, 0.0), dw(V * C, 0.0);
            const double loss2 =
                lm_head_cross_entropy(dx.data(), dw.data(), x.data(), w.data(), targets.data(), N,
                                      C, V, 0.5, scratch.data(), chunk, cap);
            EXPECT_NEAR(loss2, ref, 1e-12 * ref) << "cap=" << cap << " chunk=" << chunk;
        }
    }
    // softcap_forward caps returned logits the same way.
    Vec z = {-100.0, -1.0, 0.0, 0.5, 40.0};
    softcap_forward(z.data(), 5, 2.0);
    const Vec want = {2.0 * std::tanh(-50.0), 2.0 * std::tanh(-0.5), 0.0, 2.0 * std::tanh(0.25),
                      2.0 * std::tanh(20.0)};
    for (int i = 0; i < 5; ++i) EXPECT_NEAR(z[i], want[i], 1e-15) << i;
}

TEST(KernelCrossEntropySoftcap, Gradient) {
    const std::vector<int32_t> targets = {2, -1, 0, 6, 3, -1, 1, 4, 5, 2};
    const int N = 10, C = 6, V = 7;
    for (int chunk : {3, 10}) {
        Rng rng(74);
        Vec x = randn(rng, N * C, 1.5), w = randn(rng, V * C, 1.5);
        Vec scratch(lm_head_scratch_size(chunk, V));
        const double cap = 3.0;
        auto forward = [&] {
            const double loss = lm_head_cross_entropy(
                static_cast<double*>(nullptr), static_cast<double*>(nullptr), x.data(), w.data(),
                targets.data(), N, C, V, 1.0, scratch.data(), chunk, cap);
            return Vec{loss};
        };
        auto backward = [&](const Vec& dout, std::vector<Vec>& g) {
            lm_head_cross_entropy(g[0].data(), g[1].data(), x.data(), w.data(), targets.data(), N,
                                  C, V, dout[0], scratch.data(), chunk, cap);
        };
        GradCheck opt;
        opt.eps = 1e-5;
        check_gradients("lm_head_cross_entropy softcap chunk=" + std::to_string(chunk),
                        {{"x", &x}, {"weight", &w}}, forward, backward, opt);
    }
}

}  // namespace
}  // namespace agpt::cpu
