// GRPO's pieces against direct computation: group advantages, the k3 KL estimator (its
// expectation is the KL divergence), the clipped objective and its gradient on a tabular toy
// policy against central finite differences, and the Transformer's per-token log-probabilities
// and per-token weighted backward that carry the objective to a real model.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/cross_entropy.h"
#include "model/model_args.h"
#include "model/transformer.h"
#include "rl/grpo_math.h"
#include "rl/rollout.h"

namespace agpt {
namespace {

TEST(RlGrpoMath, GroupAdvantagesNormaliseWithinEachGroup) {
    const std::vector<double> r = {1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0.5};
    const auto a = group_advantages(r, 4, 1e-4);
    const double s1 = std::sqrt((4 * 0.25) / 3.0);  // Bessel-corrected std of {1,0,0,1}
    EXPECT_NEAR(a[0], 0.5 / (s1 + 1e-4), 1e-12);
    EXPECT_NEAR(a[1], -0.5 / (s1 + 1e-4), 1e-12);
    for (int i = 4; i < 8; i++) EXPECT_EQ(a[i], 0.0);  // all equal: no signal
    const double m3 = 0.125, s3 = std::sqrt((3 * m3 * m3 + 0.375 * 0.375) / 3.0);
    EXPECT_NEAR(a[8], -m3 / (s3 + 1e-4), 1e-12);
    EXPECT_NEAR(a[11], 0.375 / (s3 + 1e-4), 1e-12);
    EXPECT_THROW(group_advantages(r, 5), Error);
    EXPECT_THROW(group_advantages(r, 1), Error);
}

// E_{x~π}[k3(x)] = KL(π || ref) exactly, for any pair of categorical distributions.
TEST(RlGrpoMath, KlK3IsUnbiasedNonNegativeAndItsGradientIsRight) {
    Rng rng(3);
    for (int trial = 0; trial < 20; trial++) {
        const int V = 2 + trial % 7;
        std::vector<double> p(V), q(V);
        double sp = 0, sq = 0;
        for (int v = 0; v < V; v++) sp += p[v] = std::exp(2 * rng.normal());
        for (int v = 0; v < V; v++) sq += q[v] = std::exp(2 * rng.normal());
        double expected_k3 = 0, kl = 0;
        for (int v = 0; v < V; v++) {
            p[v] /= sp;
            q[v] /= sq;
        }
        for (int v = 0; v < V; v++) {
            const double k3 = kl_k3(std::log(p[v]), std::log(q[v]));
            EXPECT_GE(k3, 0.0);
            expected_k3 += p[v] * k3;
            kl += p[v] * std::log(p[v] / q[v]);
        }
        EXPECT_NEAR(expected_k3, kl, 1e-12 * std::max(1.0, kl));
    }
    EXPECT_EQ(kl_k3(-1.3, -1.3), 0.0);
    for (double lp : {-3.0, -0.7, -0.01})
        for (double ref : {-2.0, -0.5}) {
            const double h = 1e-6;
            const double fd = (kl_k3(lp + h, ref) - kl_k3(lp - h, ref)) / (2 * h);
            EXPECT_NEAR(kl_k3_grad(lp, ref), fd, 1e-7);
        }
}

TEST(RlGrpoMath, TokenTermsMatchTheDefinition) {
    const double eps = 0.2, beta = 0.04;
    // ratio 1.5 > 1+eps with A > 0: clipped, no policy gradient, loss uses 1.2·A.
    auto t = grpo_token_terms(std::log(0.3), std::log(0.2), std::log(0.25), 2.0, eps, beta);
    EXPECT_NEAR(t.ratio, 1.5, 1e-12);
    EXPECT_TRUE(t.clipped);
    EXPECT_NEAR(t.loss, -1.2 * 2.0 + beta * kl_k3(std::log(0.3), std::log(0.25)), 1e-12);
    EXPECT_NEAR(t.dloss_dlogp, beta * kl_k3_grad(std::log(0.3), std::log(0.25)), 1e-12);
    // Same ratio with A < 0: min picks the unclipped ρ·A, gradient −ρ·A.
    t = grpo_token_terms(std::log(0.3), std::log(0.2), std::log(0.25), -2.0, eps, 0.0);
    EXPECT_FALSE(t.clipped);
    EXPECT_NEAR(t.loss, 1.5 * 2.0, 1e-12);
    EXPECT_NEAR(t.dloss_dlogp, 1.5 * 2.0, 1e-12);
    // ratio 0.5 < 1−eps with A < 0: clipped at 0.8.
    t = grpo_token_terms(std::log(0.1), std::log(0.2), std::log(0.1), -1.0, eps, 0.0);
    EXPECT_TRUE(t.clipped);
    EXPECT_NEAR(t.loss, 0.8, 1e-12);
    EXPECT_EQ(t.dloss_dlogp, 0.0);
    // On-policy (ratio 1): the gradient is −A, as in REINFORCE with a baseline.
    t = grpo_token_terms(-0.9, -0.9, -0.9, 0.7, eps, beta);
    EXPECT_FALSE(t.clipped);
    EXPECT_NEAR(t.dloss_dlogp, -0.7, 1e-12);
    EXPECT_EQ(t.kl, 0.0);
}

// A tabular policy: completion i, token t has its own logits θ[i][t] (V), so
// logp_it = θ_it[o_it] − logsumexp(θ_it). The batch loss Σ_i Σ_t ℓ_it / (|o_i|·N) and its
// gradient through ∂ℓ/∂logp·(onehot − softmax) against central differences in every logit.
TEST(RlGrpoMath, ClippedObjectiveGradientOnAToyPolicyMatchesFiniteDifferences) {
    const int V = 5, N = 4;
    const std::vector<int> lens = {3, 1, 4, 2};
    Rng rng(11);
    std::vector<std::vector<std::vector<double>>> theta(N);
    std::vector<std::vector<int>> tokens(N);
    std::vector<std::vector<double>> old_lp(N), ref_lp(N);
    const std::vector<double> adv = {1.3, -0.4, 0.8, -1.1};
    auto logp = [&](const std::vector<double>& th, int tok) {
        double mx = th[0];
        for (double x : th) mx = std::max(mx, x);
        double s = 0;
        for (double x : th) s += std::exp(x - mx);
        return th[tok] - mx - std::log(s);
    };
    for (int i = 0; i < N; i++)
        for (int t = 0; t < lens[i]; t++) {
            std::vector<double> th(V);
            for (auto& x : th) x = rng.normal();
            theta[i].push_back(th);
            tokens[i].push_back(static_cast<int>(rng.below(V)));
            // Old policies off by up to ±0.6 nats so that some ratios leave [0.8, 1.2].
            old_lp[i].push_back(logp(th, tokens[i][t]) + 1.2 * (rng.uniform() - 0.5));
            ref_lp[i].push_back(logp(th, tokens[i][t]) + rng.normal() * 0.3);
        }
    const double eps = 0.2, beta = 0.1;
    auto loss = [&]() {
        double L = 0;
        for (int i = 0; i < N; i++)
            for (int t = 0; t < lens[i]; t++)
                L += grpo_token_terms(logp(theta[i][t], tokens[i][t]), old_lp[i][t], ref_lp[i][t],
                                      adv[i], eps, beta)
                         .loss /
                     (lens[i] * N);
        return L;
    };
    int clipped = 0, unclipped = 0;
    for (int i = 0; i < N; i++)
        for (int t = 0; t < lens[i]; t++) {
            auto& th = theta[i][t];
            const double lp = logp(th, tokens[i][t]);
            const auto terms = grpo_token_terms(lp, old_lp[i][t], ref_lp[i][t], adv[i], eps, beta);
            (terms.clipped ? clipped : unclipped)++;
            for (int v = 0; v < V; v++) {
                const double softmax_v = std::exp(logp(th, v));
                const double analytic =
                    terms.dloss_dlogp * ((v == tokens[i][t]) - softmax_v) / (lens[i] * N);
                const double h = 1e-6, keep = th[v];
                th[v] = keep + h;
                const double up = loss();
                th[v] = keep - h;
                const double down = loss();
                th[v] = keep;
                EXPECT_NEAR(analytic, (up - down) / (2 * h), 1e-8) << i << " " << t << " " << v;
            }
        }
    EXPECT_GT(clipped, 0);  // both branches of the min were exercised
    EXPECT_GT(unclipped, 0);
}

TEST(RlGrpoKernel, RowScaleWeightsEachRowsGradientAndRowLossesAreReported) {
    const int N = 6, C = 8, V = 11;
    Rng rng(5);
    std::vector<double> x(N * C), w(V * C), scale(N);
    for (auto& v : x) v = rng.normal();
    for (auto& v : w) v = rng.normal() * 0.5;
    for (auto& v : scale) v = rng.normal();
    std::vector<int32_t> targets = {3, -1, 10, 0, 7, 7};
    std::vector<double> dx(N * C, 0), dw(V * C, 0), row_loss(N, -5), scratch(N * V);
    const double total = cpu::lm_head_cross_entropy<double>(
        dx.data(), dw.data(), x.data(), w.data(), targets.data(), N, C, V, 0.5, scratch.data(), 4,
        0.0, scale.data(), row_loss.data());
    // Direct computation: row by row with grad_scale 0.5·scale[i].
    std::vector<double> dx_ref(N * C, 0), dw_ref(V * C, 0);
    double total_ref = 0;
    for (int i = 0; i < N; i++) {
        const double li = cpu::lm_head_cross_entropy<double>(
            dx_ref.data() + i * C, dw_ref.data(), x.data() + i * C, w.data(), targets.data() + i, 1,
            C, V, 0.5 * scale[i], scratch.data(), 1);
        EXPECT_NEAR(row_loss[i], li, 1e-12);
        total_ref += li;
    }
    EXPECT_EQ(row_loss[1], 0.0);
    EXPECT_NEAR(total, total_ref, 1e-12);
    for (int i = 0; i < N * C; i++) EXPECT_NEAR(dx[i], dx_ref[i], 1e-12);
    for (int i = 0; i < V * C; i++) EXPECT_NEAR(dw[i], dw_ref[i], 1e-12);
}

ModelArgs tiny_args() {
    ModelArgs a = find_flavor("tiny")->args;
    a.vocab_size = 40;
    return a;
}

TEST(RlTransformer, TokenLogprobsAreTheLogSoftmaxOfTheLogits) {
    const ModelArgs a = tiny_args();
    const int B = 2, T = 7, V = a.vocab_size;
    Transformer m(a, B, T);
    m.init_weights("agpt", 1);
    Rng rng(2);
    std::vector<int32_t> tokens(B * T), targets(B * T);
    for (auto& t : tokens) t = static_cast<int32_t>(rng.below(V));
    for (auto& t : targets) t = static_cast<int32_t>(rng.below(V));
    targets[3] = -1;
    std::vector<double> lp(B * T, 9);
    m.token_logprobs(tokens.data(), targets.data(), B, T, lp.data());
    std::vector<float> logits(static_cast<std::size_t>(B) * T * V);
    m.forward_logits(tokens.data(), B, T, logits.data());
    for (int i = 0; i < B * T; i++) {
        if (targets[i] < 0) {
            EXPECT_EQ(lp[i], 0.0);
            continue;
        }
        const float* row = logits.data() + static_cast<std::size_t>(i) * V;
        double mx = row[0], s = 0;
        for (int v = 0; v < V; v++) mx = std::max(mx, double(row[v]));
        for (int v = 0; v < V; v++) s += std::exp(row[v] - mx);
        EXPECT_NEAR(lp[i], row[targets[i]] - mx - std::log(s), 1e-4) << i;
    }
}

// The gradient of Σ w_i·(−log p_i) from forward_backward_weighted against a central difference
// of that sum (through token_logprobs) along random directions in parameter space.
TEST(RlTransformer, WeightedBackwardMatchesFiniteDifferences) {
    const ModelArgs a = tiny_args();
    const int B = 2, T = 6, V = a.vocab_size;
    Transformer m(a, B, T);
    m.init_weights("agpt", 4);
    Rng rng(6);
    std::vector<int32_t> tokens(B * T), targets(B * T);
    for (auto& t : tokens) t = static_cast<int32_t>(rng.below(V));
    for (auto& t : targets) t = static_cast<int32_t>(rng.below(V));
    targets[0] = targets[7] = -1;
    std::vector<float> weights(B * T);
    for (auto& w : weights) w = static_cast<float>(rng.normal());
    auto objective = [&] {
        std::vector<double> lp(B * T);
        m.token_logprobs(tokens.data(), targets.data(), B, T, lp.data());
        double s = 0;
        for (int i = 0; i < B * T; i++) s += -double(weights[i]) * lp[i];
        return s;
    };
    m.zero_grad();
    m.forward_backward_weighted(tokens.data(), targets.data(), weights.data(), B, T);
    const std::vector<float> g = m.grads();
    std::vector<float>& p = m.params();
    const std::vector<float> p0 = p;
    for (int trial = 0; trial < 3; trial++) {
        std::vector<double> dir(p.size());
        double along = 0;
        for (std::size_t i = 0; i < p.size(); i++) {
            dir[i] = rng.normal();
            along += dir[i] * g[i];
        }
        const double h = 1e-3;
        for (std::size_t i = 0; i < p.size(); i++) p[i] = static_cast<float>(p0[i] + h * dir[i]);
        const double up = objective();
        for (std::size_t i = 0; i < p.size(); i++) p[i] = static_cast<float>(p0[i] - h * dir[i]);
        const double down = objective();
        p = p0;
        const double fd = (up - down) / (2 * h);
        EXPECT_NEAR(along, fd, 2e-2 * std::max(1.0, std::fabs(fd))) << "trial " << trial;
    }
    // Uniform weights reduce to forward_backward's grad_scale.
    std::fill(weights.begin(), weights.end(), 0.25f);
    m.zero_grad();
    m.forward_backward_weighted(tokens.data(), targets.data(), weights.data(), B, T);
    const std::vector<float> gw = m.grads();
    m.zero_grad();
    m.forward_backward(tokens.data(), targets.data(), B, T, 0.25);
    for (std::size_t i = 0; i < gw.size(); i++) ASSERT_EQ(gw[i], m.grads()[i]) << i;
}

// One prefill copied into every completion's cache samples what separate prefills sample.
TEST(RlRollout, GroupSamplingEqualsOneCompletionAtATime) {
    const ModelArgs a = tiny_args();
    Transformer m(a, 1, 16);
    m.init_weights("agpt", 8);
    const std::vector<int32_t> prompt = {1, 5, 9, 2};
    const std::vector<uint64_t> seeds = {3, 4, 5, 6, 7};
    const auto group = sample_group(m, prompt, 8, 1.5, 7, seeds);
    ASSERT_EQ(group.size(), seeds.size());
    bool differ = false;
    for (std::size_t g = 0; g < seeds.size(); g++) {
        EXPECT_EQ(group[g], sample_completion(m, prompt, 8, 1.5, 7, seeds[g]));
        EXPECT_LE(group[g].size(), 8u);
        differ |= group[g] != group[0];
    }
    EXPECT_TRUE(differ);  // the seeds matter
}

TEST(RlRollout, PackRowsScoresOnlyCompletionTokens) {
    const PackedBatch p = pack_rows({{10, 11, 12, 13}, {10, 20, 21}}, {2, 1}, 99);
    EXPECT_EQ(p.B, 2);
    EXPECT_EQ(p.T, 3);
    EXPECT_EQ(p.inputs, (std::vector<int32_t>{10, 11, 12, 10, 20, 99}));
    // Row 0: position 1 predicts 12 (first completion token), position 2 predicts 13.
    EXPECT_EQ(p.targets, (std::vector<int32_t>{-1, 12, 13, 20, 21, -1}));
}

}  // namespace
}  // namespace agpt
