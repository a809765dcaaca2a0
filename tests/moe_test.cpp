// The mixture-of-experts FFN (model/moe.h) and its kernels (cpu/router.h, cpu/moe_dispatch.h):
// routing edge cases (ties, experts without tokens, top-k = E, the bias steering only the
// choice), the sorted dispatch + grouped GEMM + combine against a dense per-token reference,
// and every gradient against central finite differences in double precision.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <ostream>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/moe_dispatch.h"
#include "kernels/cpu/router.h"
#include "model/moe.h"

namespace agpt {
namespace {

using cpu::RouterOptions;
using cpu::RouterScore;
using Vec = std::vector<double>;

Vec randn(Rng& rng, std::size_t n, double std = 1.0) {
    Vec v(n);
    for (auto& x : v) x = std * rng.normal();
    return v;
}

struct MoeCase {
    MoeShape shape;
    Vec router, w1, w2, w3, sw1, sw2, sw3;
    std::vector<float> bias;  // empty: no bias

    MoeCase(MoeShape s, uint64_t seed) : shape(s) {
        Rng rng(seed);
        const std::size_t D = s.dim, E = s.n_experts, F = s.hidden, FS = s.shared_hidden();
        router = randn(rng, E * D);
        w1 = randn(rng, E * F * D, 0.5);
        w2 = randn(rng, E * D * F, 0.5);
        w3 = randn(rng, E * F * D, 0.5);
        sw1 = randn(rng, FS * D, 0.5);
        sw2 = randn(rng, D * FS, 0.5);
        sw3 = randn(rng, FS * D, 0.5);
    }
    MoeWeights<double> weights() const {
        MoeWeights<double> w{router.data(), w1.data(), w2.data(), w3.data(),
                             nullptr,       nullptr,   nullptr,   nullptr};
        if (shape.n_shared_experts > 0) {
            w.shared_w1 = sw1.data();
            w.shared_w2 = sw2.data();
            w.shared_w3 = sw3.data();
        }
        if (!bias.empty()) w.expert_bias = bias.data();
        return w;
    }
};

double silu(double a) {
    return a / (1 + std::exp(-a));
}

// y (D) += SwiGLU FFN with w1, w3 (F,D), w2 (D,F), by plain loops.
void ffn_reference(double* y, const double* x, const double* w1, const double* w2, const double* w3,
                   int D, int F, double scale) {
    for (int f = 0; f < F; f++) {
        double a = 0, b = 0;
        for (int c = 0; c < D; c++) {
            a += w1[f * D + c] * x[c];
            b += w3[f * D + c] * x[c];
        }
        const double h = silu(a) * b;
        for (int c = 0; c < D; c++) y[c] += scale * w2[c * F + f] * h;
    }
}

// The whole layer token by token, with no sorting: router scores, a full sort of the biased
// scores (stable, so ties keep the lower index), gates, and each chosen expert's FFN.
Vec dense_reference(const MoeCase& m, const Vec& x, int N, std::vector<int>* chosen = nullptr) {
    const MoeShape& s = m.shape;
    const int D = s.dim, E = s.n_experts, K = s.top_k, F = s.hidden;
    Vec out(static_cast<std::size_t>(N) * D, 0.0);
    for (int n = 0; n < N; n++) {
        const double* xn = x.data() + n * D;
        Vec score(E);
        for (int e = 0; e < E; e++) {
            double z = 0;
            for (int c = 0; c < D; c++) z += m.router[e * D + c] * xn[c];
            score[e] = z;
        }
        if (s.router.score == RouterScore::softmax) {
            const double zmax = *std::max_element(score.begin(), score.end());
            double sum = 0;
            for (auto& v : score) sum += v = std::exp(v - zmax);
            for (auto& v : score) v /= sum;
        } else {
            for (auto& v : score) v = 1 / (1 + std::exp(-v));
        }
        std::vector<int> order(E);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
            const double ba = score[a] + (m.bias.empty() ? 0.0 : m.bias[a]);
            const double bb = score[b] + (m.bias.empty() ? 0.0 : m.bias[b]);
            return ba > bb;
        });
        double sum = 0;
        for (int j = 0; j < K; j++) sum += score[order[j]];
        for (int j = 0; j < K; j++) {
            const int e = order[j];
            if (chosen) chosen->push_back(e);
            const double gate =
                score[e] * s.router.route_scale / (s.router.route_norm ? sum + 1e-20 : 1.0);
            ffn_reference(out.data() + n * D, xn, m.w1.data() + static_cast<long>(e) * F * D,
                          m.w2.data() + static_cast<long>(e) * D * F,
                          m.w3.data() + static_cast<long>(e) * F * D, D, F, gate);
        }
        if (s.n_shared_experts > 0)
            ffn_reference(out.data() + n * D, xn, m.sw1.data(), m.sw2.data(), m.sw3.data(), D,
                          s.shared_hidden(), 1.0);
    }
    return out;
}

Vec run_forward(MoeFfn<double>& moe, const MoeCase& m, const Vec& x, int N) {
    Vec out(static_cast<std::size_t>(N) * m.shape.dim, 0.0);
    moe.forward(out.data(), x.data(), m.weights(), N, false);
    return out;
}

double max_abs_diff(const Vec& a, const Vec& b) {
    EXPECT_EQ(a.size(), b.size());
    double d = 0;
    for (std::size_t i = 0; i < a.size(); i++) d = std::max(d, std::abs(a[i] - b[i]));
    return d;
}

MoeShape shape_of(int D, int E, int shared, int K, int F, RouterOptions r = {}) {
    MoeShape s;
    s.dim = D;
    s.n_experts = E;
    s.n_shared_experts = shared;
    s.top_k = K;
    s.hidden = F;
    s.router = r;
    return s;
}

const RouterOptions kSigmoidNormScaled{RouterScore::sigmoid, true, 2.5};

TEST(MoeRouter, TiesGoToTheLowerExpertIndex) {
    const int N = 3, E = 6, K = 4;
    const std::vector<double> logits(N * E, 0.7);  // every score equal
    std::vector<int> experts(N * K);
    std::vector<double> gates(N * K), scores(N * E);
    cpu::router_forward<double>(experts.data(), gates.data(), scores.data(), logits.data(), nullptr,
                                N, E, K, {RouterScore::softmax, false, 1.0});
    for (int n = 0; n < N; n++)
        for (int j = 0; j < K; j++) {
            EXPECT_EQ(experts[n * K + j], j);
            EXPECT_NEAR(gates[n * K + j], 1.0 / E, 1e-15);
        }
    // A tie between experts 4 and 1 for the last place: 1 wins; the order is by score.
    const std::vector<double> l2 = {0.0, 1.0, 3.0, 0.0, 1.0, 2.0};
    cpu::router_forward<double>(experts.data(), gates.data(), scores.data(), l2.data(), nullptr, 1,
                                E, 3, {RouterScore::sigmoid, true, 1.0});
    EXPECT_EQ(experts[0], 2);
    EXPECT_EQ(experts[1], 5);
    EXPECT_EQ(experts[2], 1);
    EXPECT_NEAR(gates[0] + gates[1] + gates[2], 1.0, 1e-15);  // route_norm
}

TEST(MoeRouter, BiasChoosesButGatesComeFromUnbiasedScores) {
    const int E = 4, K = 2;
    const std::vector<double> logits = {2.0, 1.0, 0.0, -1.0};
    const std::vector<float> bias = {0.0f, 0.0f, 0.0f, 5.0f};  // forces expert 3 in
    std::vector<int> experts(K);
    std::vector<double> gates(K), scores(E);
    cpu::router_forward<double>(experts.data(), gates.data(), scores.data(), logits.data(),
                                bias.data(), 1, E, K, {RouterScore::sigmoid, false, 1.0});
    EXPECT_EQ(experts[0], 3);
    EXPECT_EQ(experts[1], 0);
    EXPECT_DOUBLE_EQ(gates[0], 1 / (1 + std::exp(1.0)));  // sigmoid(-1): no bias in the gate
    EXPECT_DOUBLE_EQ(gates[1], 1 / (1 + std::exp(-2.0)));
}

TEST(MoeDispatch, PlanSortsAssignmentsByExpertKeepingTokenOrder) {
    const int N = 5, K = 2, E = 4;
    const std::vector<int> experts = {2, 0, 0, 2, 3, 0, 2, 3, 0, 2};
    std::vector<int> offsets(E + 1), row_token(N * K), slot_row(N * K);
    cpu::MoePlan plan{E, offsets.data(), row_token.data(), slot_row.data()};
    cpu::moe_plan(plan, experts.data(), N, K, E);
    EXPECT_EQ(offsets, (std::vector<int>{0, 4, 4, 8, 10}));  // expert 1 gets nothing
    EXPECT_EQ(row_token, (std::vector<int>{0, 1, 2, 4, 0, 1, 3, 4, 2, 3}));
    for (int i = 0; i < N * K; i++) {
        EXPECT_EQ(row_token[slot_row[i]], i / K);
        const int r = slot_row[i];
        EXPECT_TRUE(r >= offsets[experts[i]] && r < offsets[experts[i] + 1]);
    }
}

struct LayerCase {
    const char* name;
    MoeShape shape;
    bool skew_bias;  // bias that sends every token to experts 0 and 1
};

void PrintTo(const LayerCase& c, std::ostream* os) {
    *os << c.name;
}

class MoeLayer : public ::testing::TestWithParam<LayerCase> {};

TEST_P(MoeLayer, ForwardEqualsDensePerTokenReference) {
    const LayerCase& c = GetParam();
    const int N = 9;
    MoeCase m(c.shape, 11);
    if (c.skew_bias) {
        m.bias.assign(c.shape.n_experts, 0.0f);
        m.bias[0] = m.bias[1] = 10.0f;
    }
    Rng rng(3);
    const Vec x = randn(rng, static_cast<std::size_t>(N) * c.shape.dim);
    MoeFfn<double> moe(c.shape, N + 4);
    std::vector<int> chosen;
    const Vec ref = dense_reference(m, x, N, &chosen);
    const Vec out = run_forward(moe, m, x, N);
    EXPECT_LT(max_abs_diff(out, ref), 1e-12);
    EXPECT_EQ(std::vector<int>(moe.experts(), moe.experts() + N * c.shape.top_k), chosen);
    const std::vector<int> load = moe.last_load();
    EXPECT_EQ(std::accumulate(load.begin(), load.end(), 0), N * c.shape.top_k);
    if (c.skew_bias) {
        for (int e = 2; e < c.shape.n_experts; e++) EXPECT_EQ(load[e], 0) << "expert " << e;
    }
}

// loss = Σ out ⊙ R; every gradient of the layer against central differences.
TEST_P(MoeLayer, GradientsMatchFiniteDifferences) {
    const LayerCase& c = GetParam();
    const int N = 7, D = c.shape.dim;
    MoeCase m(c.shape, 5);
    if (c.skew_bias) {
        m.bias.assign(c.shape.n_experts, 0.0f);
        m.bias[0] = m.bias[1] = 10.0f;
    }
    Rng rng(9);
    Vec x = randn(rng, static_cast<std::size_t>(N) * D);
    const Vec R = randn(rng, x.size());
    MoeFfn<double> moe(c.shape, N);
    auto loss = [&]() {
        const Vec out = run_forward(moe, m, x, N);
        double l = 0;
        for (std::size_t i = 0; i < out.size(); i++) l += out[i] * R[i];
        return l;
    };
    Vec dx(x.size(), 0.0), g_router(m.router.size(), 0.0), g_w1(m.w1.size(), 0.0),
        g_w2(m.w2.size(), 0.0), g_w3(m.w3.size(), 0.0), g_sw1(m.sw1.size(), 0.0),
        g_sw2(m.sw2.size(), 0.0), g_sw3(m.sw3.size(), 0.0);
    loss();
    const MoeGrads<double> g{g_router.data(), g_w1.data(),  g_w2.data(), g_w3.data(),
                             g_sw1.data(),    g_sw2.data(), g_sw3.data()};
    moe.backward(dx.data(), g, R.data(), x.data(), m.weights(), N);
    const std::vector<int> routed(moe.experts(), moe.experts() + N * c.shape.top_k);

    auto check = [&](const char* what, Vec& p, const Vec& grad) {
        const double h = 1e-6;
        double worst = 0, scale = 1e-3;
        // Up to ~64 evenly spaced entries per tensor (all of the small ones).
        const std::size_t stride = std::max<std::size_t>(1, p.size() / 64);
        for (std::size_t i = 0; i < p.size(); i += stride) {
            const double keep = p[i];
            p[i] = keep + h;
            const double lp = loss();
            p[i] = keep - h;
            const double lm = loss();
            p[i] = keep;
            worst = std::max(worst, std::abs((lp - lm) / (2 * h) - grad[i]));
            scale = std::max(scale, std::abs(grad[i]));
        }
        EXPECT_LT(worst / scale, 1e-6) << what;
    };
    check("x", x, dx);
    check("router", m.router, g_router);
    check("w1", m.w1, g_w1);
    check("w2", m.w2, g_w2);
    check("w3", m.w3, g_w3);
    if (c.shape.n_shared_experts > 0) {
        check("shared_w1", m.sw1, g_sw1);
        check("shared_w2", m.sw2, g_sw2);
        check("shared_w3", m.sw3, g_sw3);
    }
    loss();  // the perturbations must not have changed the routing
    EXPECT_EQ(std::vector<int>(moe.experts(), moe.experts() + N * c.shape.top_k), routed);
    if (c.skew_bias) {  // experts that received no tokens get exactly zero gradient
        const std::size_t per = static_cast<std::size_t>(c.shape.hidden) * D;
        for (std::size_t i = 2 * per; i < g_w1.size(); i++) {
            ASSERT_EQ(g_w1[i], 0.0);
            ASSERT_EQ(g_w2[i], 0.0);
            ASSERT_EQ(g_w3[i], 0.0);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MoeLayer,
    ::testing::Values(
        LayerCase{"softmax_top2_shared2", shape_of(6, 4, 2, 2, 5), false},
        LayerCase{"sigmoid_norm_scale", shape_of(6, 5, 1, 3, 4, kSigmoidNormScaled), false},
        LayerCase{"no_shared_softmax_norm",
                  shape_of(5, 4, 0, 2, 3, {RouterScore::softmax, true, 1.0}), false},
        LayerCase{"topk_equals_experts", shape_of(6, 4, 1, 4, 3), false},
        LayerCase{"empty_experts", shape_of(6, 6, 1, 2, 4, kSigmoidNormScaled), true}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(MoeLayer, TopKEqualsExpertsWithNormalisedSoftmaxIsTheFullMixture) {
    // k = E with normalised softmax gates: every token sees every expert, weighted by softmax.
    const MoeShape s = shape_of(5, 3, 0, 3, 4, {RouterScore::softmax, true, 1.0});
    MoeCase m(s, 21);
    Rng rng(2);
    const int N = 4;
    const Vec x = randn(rng, static_cast<std::size_t>(N) * s.dim);
    MoeFfn<double> moe(s, N);
    const Vec out = run_forward(moe, m, x, N);
    Vec ref(out.size(), 0.0);
    for (int n = 0; n < N; n++) {
        Vec z(3, 0.0);
        for (int e = 0; e < 3; e++)
            for (int c = 0; c < s.dim; c++) z[e] += m.router[e * s.dim + c] * x[n * s.dim + c];
        const double sum = std::exp(z[0]) + std::exp(z[1]) + std::exp(z[2]);
        for (int e = 0; e < 3; e++)
            ffn_reference(ref.data() + n * s.dim, x.data() + n * s.dim,
                          m.w1.data() + e * s.hidden * s.dim, m.w2.data() + e * s.dim * s.hidden,
                          m.w3.data() + e * s.hidden * s.dim, s.dim, s.hidden,
                          std::exp(z[e]) / sum);
    }
    EXPECT_LT(max_abs_diff(out, ref), 1e-12);
    EXPECT_EQ(moe.last_load(), (std::vector<int>{N, N, N}));
}

TEST(MoeLayer, FloatMatchesDoubleAndCountsLoad) {
    const MoeShape s = shape_of(16, 8, 2, 3, 12, kSigmoidNormScaled);
    MoeCase m(s, 4);
    Rng rng(8);
    const int N = 64;
    const Vec x = randn(rng, static_cast<std::size_t>(N) * s.dim);
    MoeFfn<double> ref(s, N);
    const Vec out_d = run_forward(ref, m, x, N);
    auto f = [](const Vec& v) { return std::vector<float>(v.begin(), v.end()); };
    const auto router = f(m.router), w1 = f(m.w1), w2 = f(m.w2), w3 = f(m.w3), sw1 = f(m.sw1),
               sw2 = f(m.sw2), sw3 = f(m.sw3), xf = f(x);
    MoeFfn<float> moe(s, N);
    std::vector<float> out(out_d.size(), 0.0f);
    const MoeWeights<float> w{router.data(), w1.data(),  w2.data(),  w3.data(),
                              sw1.data(),    sw2.data(), sw3.data(), nullptr};
    moe.forward(out.data(), xf.data(), w, N, true);
    moe.forward(out.data(), xf.data(), w, N, true);
    double worst = 0, scale = 0;
    for (std::size_t i = 0; i < out.size(); i++) {
        worst = std::max(worst, std::abs(out[i] / 2.0 - out_d[i]));
        scale = std::max(scale, std::abs(out_d[i]));
    }
    EXPECT_LT(worst / scale, 1e-5);
    double total = 0;
    for (double t : moe.tokens_per_expert()) total += t;
    EXPECT_EQ(total, 2.0 * N * s.top_k);
    moe.reset_load();
    for (double t : moe.tokens_per_expert()) EXPECT_EQ(t, 0.0);
}

TEST(MoeBalance, ImbalanceIsMaxOverMeanLoad) {
    EXPECT_DOUBLE_EQ(load_imbalance({5, 5, 5, 5}), 1.0);
    EXPECT_DOUBLE_EQ(load_imbalance({8, 0, 0, 0}), 4.0);
    EXPECT_DOUBLE_EQ(load_imbalance({3, 1}), 1.5);
    EXPECT_DOUBLE_EQ(load_imbalance({0, 0}), 1.0);
}

TEST(MoeBalance, BiasStepIsSignedCentredAndCoeffSized) {
    std::vector<float> bias = {0.0f, 0.0f, 0.0f, 0.0f};
    update_expert_bias(bias.data(), {10, 2, 2, 2}, 1e-3);  // mean 4: expert 0 over, others under
    // Raw steps (−1, +1, +1, +1)·1e-3 have mean 0.5e-3; centred: −1.5e-3, +0.5e-3 ×3.
    EXPECT_NEAR(bias[0], -1.5e-3, 1e-9);
    for (int e = 1; e < 4; e++) EXPECT_NEAR(bias[e], 0.5e-3, 1e-9);
    EXPECT_NEAR(bias[0] + bias[1] + bias[2] + bias[3], 0.0, 1e-9);
    update_expert_bias(bias.data(), {4, 4, 4, 4}, 1e-3);  // balanced: no change
    EXPECT_NEAR(bias[0], -1.5e-3, 1e-9);
}

// A router whose weights all point along the inputs' common direction sends nearly every token
// to the experts with the largest weights; the aux-loss-free rule (coeff 1e-3, one update per
// step) must move the load toward balance without touching the gradients or the gates' formula.
TEST(MoeBalance, BiasUpdateBalancesASkewedRouter) {
    const int D = 8, E = 8, K = 2, N = 256;
    const MoeShape s = shape_of(D, E, 0, K, 4, {RouterScore::sigmoid, false, 1.0});
    MoeCase m(s, 7);
    Rng rng(12);
    Vec x = randn(rng, static_cast<std::size_t>(N) * D, 0.3);
    for (int n = 0; n < N; n++) x[n * D] += 1.0;  // a shared direction: feature 0
    for (int e = 0; e < E; e++)
        for (int c = 0; c < D; c++)
            m.router[e * D + c] = (c == 0 ? 0.4 * e : 0.1 * m.router[e * D + c]);
    m.bias.assign(E, 0.0f);
    MoeFfn<double> moe(s, N);
    Vec out(x.size());
    auto step = [&]() {
        std::fill(out.begin(), out.end(), 0.0);
        moe.forward(out.data(), x.data(), m.weights(), N, true);
        const double imbalance = load_imbalance(moe.tokens_per_expert());
        update_expert_bias(m.bias.data(), moe.tokens_per_expert(), 1e-3);
        moe.reset_load();
        return imbalance;
    };
    const double before = step();
    EXPECT_GT(before, 3.0);  // the two top experts take most of the 2N assignments
    double after = before;
    for (int i = 0; i < 400; i++) after = step();
    EXPECT_LT(after, 1.5) << "imbalance went from " << before;
    // Balance came from the bias alone: the experts with the strongest router weights were
    // pushed down.
    EXPECT_LT(m.bias[E - 1], 0.0f);
    EXPECT_GT(m.bias[0], 0.0f);
}

// DeepSeek-V3's sequence-level balance loss, from its definition: per sequence,
// f_e = E/(k·T)·count_e, P_e = mean_t s_{t,e}/Σ_j s_{t,j}; L = α·mean over sequences of Σ_e
// f_e·P_e.
double aux_reference(MoeFfn<double>& moe, const MoeShape& s, int N, int T) {
    const int E = s.n_experts, K = s.top_k;
    double L = 0;
    for (int b = 0; b < N / T; b++) {
        Vec f(E, 0.0), P(E, 0.0);
        for (int t = b * T; t < (b + 1) * T; t++) {
            for (int j = 0; j < K; j++) f[moe.experts()[t * K + j]] += double(E) / (K * T);
            double sum = 0;
            for (int e = 0; e < E; e++) sum += moe.scores()[t * E + e];
            for (int e = 0; e < E; e++) P[e] += moe.scores()[t * E + e] / sum / T;
        }
        for (int e = 0; e < E; e++) L += s.aux_loss_alpha * f[e] * P[e] / (N / T);
    }
    return L;
}

struct AuxCase {
    const char* name;
    RouterOptions router;
};
void PrintTo(const AuxCase& c, std::ostream* os) {
    *os << c.name;
}

class MoeAux : public ::testing::TestWithParam<AuxCase> {};

TEST_P(MoeAux, LossFollowsTheDefinitionAndItsGradientMatchesFiniteDifferences) {
    MoeShape s = shape_of(6, 5, 1, 2, 4, GetParam().router);
    s.aux_loss_alpha = 0.3;
    const int T = 4, N = 3 * T;  // three sequences
    const double weight = 2.0;   // the loss's weight in the objective
    MoeCase m(s, 17);
    Rng rng(23);
    Vec x = randn(rng, static_cast<std::size_t>(N) * s.dim);
    const Vec R = randn(rng, x.size());
    MoeFfn<double> moe(s, N);
    auto objective = [&]() {
        Vec out(x.size(), 0.0);
        moe.forward(out.data(), x.data(), m.weights(), N, false, T);
        double l = weight * moe.aux_loss();
        for (std::size_t i = 0; i < out.size(); i++) l += out[i] * R[i];
        return l;
    };
    objective();
    EXPECT_GT(moe.aux_loss(), 0.0);
    EXPECT_NEAR(moe.aux_loss(), aux_reference(moe, s, N, T), 1e-14);
    Vec dx(x.size(), 0.0), g_router(m.router.size(), 0.0), g_w1(m.w1.size(), 0.0),
        g_w2(m.w2.size(), 0.0), g_w3(m.w3.size(), 0.0), g_sw1(m.sw1.size(), 0.0),
        g_sw2(m.sw2.size(), 0.0), g_sw3(m.sw3.size(), 0.0);
    const MoeGrads<double> g{g_router.data(), g_w1.data(),  g_w2.data(), g_w3.data(),
                             g_sw1.data(),    g_sw2.data(), g_sw3.data()};
    moe.backward(dx.data(), g, R.data(), x.data(), m.weights(), N, weight);
    // Without the aux weight the router gradient differs: the loss is seen to act.
    Vec g_router0(m.router.size(), 0.0), dx0(x.size(), 0.0);
    Vec s1(m.w1.size()), s2(m.w2.size()), s3(m.w3.size()), t1(m.sw1.size()), t2(m.sw2.size()),
        t3(m.sw3.size());
    moe.backward(
        dx0.data(),
        {g_router0.data(), s1.data(), s2.data(), s3.data(), t1.data(), t2.data(), t3.data()},
        R.data(), x.data(), m.weights(), N, 0.0);
    double moved = 0;
    for (std::size_t i = 0; i < g_router.size(); i++)
        moved = std::max(moved, std::abs(g_router[i] - g_router0[i]));
    EXPECT_GT(moved, 1e-3);
    auto check = [&](const char* what, Vec& p, const Vec& grad) {
        const double h = 1e-6;
        double worst = 0, scale = 1e-3;
        for (std::size_t i = 0; i < p.size(); i++) {
            const double keep = p[i];
            p[i] = keep + h;
            const double lp = objective();
            p[i] = keep - h;
            const double lm = objective();
            p[i] = keep;
            worst = std::max(worst, std::abs((lp - lm) / (2 * h) - grad[i]));
            scale = std::max(scale, std::abs(grad[i]));
        }
        EXPECT_LT(worst / scale, 1e-6) << what;
    };
    check("router", m.router, g_router);
    check("x", x, dx);
}

INSTANTIATE_TEST_SUITE_P(Routers, MoeAux,
                         ::testing::Values(AuxCase{"softmax", {RouterScore::softmax, false, 1.0}},
                                           AuxCase{"sigmoid_norm_scale", kSigmoidNormScaled}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(MoeLayer, RejectsTopKAboveExperts) {
    EXPECT_THROW(MoeFfn<float>(shape_of(4, 3, 0, 4, 4), 8), Error);
}

}  // namespace
}  // namespace agpt
