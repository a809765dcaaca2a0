#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/adamw.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/lr_schedule.h"

namespace agpt {
namespace {

using nlohmann::json;

json load_golden() {
    const std::string path = std::string(AGPT_TEST_DATA_DIR) + "/optimizer_golden.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    return json::parse(in);
}

std::vector<double> flatten(const json& rows) {
    std::vector<double> out;
    for (const auto& row : rows)
        for (const auto& x : row) out.push_back(x.get<double>());
    return out;
}

// Restores the OpenMP thread count a test changed, so later tests run as configured.
class ThreadCountGuard {
  public:
    ThreadCountGuard() : saved_(omp_get_max_threads()) {}
    ~ThreadCountGuard() { omp_set_num_threads(saved_); }

  private:
    int saved_;
};

std::vector<float> random_floats(std::size_t n, unsigned seed, float scale) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> out(n);
    for (auto& x : out) x = dist(rng);
    return out;
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The golden vectors: torch.optim.AdamW on a 2x3 float64 parameter, gradient
// grad_base * grad_scale_per_step[k-1] at step k.
struct GoldenAdamW {
    json g;
    cpu::AdamWStep hyper(long step) const {
        const auto& h = g["hyper"];
        return {h["lr"].get<double>(),  h["beta1"].get<double>(),        h["beta2"].get<double>(),
                h["eps"].get<double>(), h["weight_decay"].get<double>(), step};
    }
    std::vector<double> grad(int step) const {
        std::vector<double> out = flatten(g["grad_base"]);
        const double scale = g["grad_scale_per_step"][step - 1].get<double>();
        for (auto& x : out) x *= scale;
        return out;
    }
    std::vector<double> theta(int step) const {
        return g["theta_after_step"][std::to_string(step)].get<std::vector<double>>();
    }
};

template <typename T>
void run_golden(double theta_tol, double m_tol, double v_rel_tol) {
    const GoldenAdamW golden{load_golden()["adamw"]};
    const std::vector<double> theta0 = flatten(golden.g["theta0"]);
    const std::size_t n = theta0.size();
    std::vector<T> p(theta0.begin(), theta0.end()), m(n, T(0)), v(n, T(0));
    for (int step = 1; step <= 3; ++step) {
        const std::vector<double> gd = golden.grad(step);
        const std::vector<T> g(gd.begin(), gd.end());
        cpu::adamw_update<T>(p.data(), g.data(), m.data(), v.data(), n, golden.hyper(step));
        const std::vector<double> want = golden.theta(step);
        ASSERT_EQ(want.size(), n);
        for (std::size_t i = 0; i < n; ++i)
            EXPECT_NEAR(p[i], want[i], theta_tol) << "step " << step << " element " << i;
    }
    const auto m_want = golden.g["m_after_step_3"].get<std::vector<double>>();
    const auto v_want = golden.g["v_after_step_3"].get<std::vector<double>>();
    for (std::size_t i = 0; i < n; ++i) {
        EXPECT_NEAR(m[i], m_want[i], m_tol) << "m element " << i;
        // v is ~1e-6, so an absolute tolerance would say nothing; the golden file prints 8-9
        // significant digits.
        EXPECT_NEAR(v[i], v_want[i], v_rel_tol * std::abs(v_want[i])) << "v element " << i;
    }
}

TEST(AdamWKernel, DoubleMatchesTorchGolden) {
    const double tol = load_golden()["adamw"]["tolerance"].get<double>();
    run_golden<double>(tol, tol, 1e-7);
}

TEST(AdamWKernel, FloatMatchesTorchGolden) {
    // A few float32 ulps of values up to 0.6 (measured: 4e-8).
    run_golden<float>(2e-7, 1e-8, 1e-6);
}

TEST(AdamWKernel, ZeroGradientOnlyDecaysWeights) {
    // With m = v = 0 and g = 0 the Adam term is 0 / (0 + eps) = 0: only the decoupled decay acts.
    std::vector<double> p = {1.0, -2.0, 0.5}, g(3, 0.0), m(3, 0.0), v(3, 0.0);
    const cpu::AdamWStep s{0.1, 0.9, 0.95, 1e-8, 0.2, 1};
    cpu::adamw_update<double>(p.data(), g.data(), m.data(), v.data(), 3, s);
    EXPECT_DOUBLE_EQ(p[0], 1.0 * (1.0 - 0.1 * 0.2));
    EXPECT_DOUBLE_EQ(p[1], -2.0 * (1.0 - 0.1 * 0.2));
    EXPECT_DOUBLE_EQ(p[2], 0.5 * (1.0 - 0.1 * 0.2));
}

TEST(AdamWKernel, FirstStepMovesEachWeightByLr) {
    // At step 1 the bias corrections make m_hat = g and v_hat = g², so (eps aside and without
    // decay) every weight moves by exactly lr against its gradient's sign.
    std::vector<double> p = {0.0, 0.0, 0.0}, g = {3.0, -1e-3, 42.0}, m(3, 0.0), v(3, 0.0);
    const cpu::AdamWStep s{0.01, 0.9, 0.999, 0.0, 0.0, 1};
    cpu::adamw_update<double>(p.data(), g.data(), m.data(), v.data(), 3, s);
    EXPECT_NEAR(p[0], -0.01, 1e-15);
    EXPECT_NEAR(p[1], 0.01, 1e-15);
    EXPECT_NEAR(p[2], -0.01, 1e-15);
}

TEST(AdamWKernel, BitIdenticalAcrossThreadCounts) {
    ThreadCountGuard guard;
    // Not a multiple of any vector width, so chunk edges fall mid-vector.
    const std::size_t n = 100003;
    const std::vector<float> p0 = random_floats(n, 1, 0.02f);
    std::vector<std::vector<float>> results;
    for (int threads : {1, 2, 3}) {
        omp_set_num_threads(threads);
        std::vector<float> p = p0, m(n, 0.0f), v(n, 0.0f);
        for (long step = 1; step <= 3; ++step) {
            const std::vector<float> g = random_floats(n, 100 + step, 1e-3f);
            const cpu::AdamWStep s{8e-4, 0.9, 0.95, 1e-8, 0.1, step};
            cpu::adamw_update<float>(p.data(), g.data(), m.data(), v.data(), n, s);
        }
        results.push_back(p);
        results.push_back(m);
        results.push_back(v);
    }
    for (std::size_t k = 3; k < results.size(); ++k)
        EXPECT_TRUE(bit_equal(results[k % 3], results[k])) << "buffer " << k;
}

TEST(OptimAdamW, ClassMatchesKernelAndCountsSteps) {
    const GoldenAdamW golden{load_golden()["adamw"]};
    const auto& h = golden.g["hyper"];
    AdamWConfig cfg;
    cfg.lr = h["lr"].get<double>();
    cfg.beta1 = h["beta1"].get<double>();
    cfg.beta2 = h["beta2"].get<double>();
    cfg.eps = h["eps"].get<double>();
    cfg.weight_decay = h["weight_decay"].get<double>();
    const std::vector<double> theta0 = flatten(golden.g["theta0"]);
    std::vector<float> p(theta0.begin(), theta0.end());
    AdamW opt(cfg, p.size());
    for (int step = 1; step <= 3; ++step) {
        const std::vector<double> gd = golden.grad(step);
        const std::vector<float> g(gd.begin(), gd.end());
        opt.step(p.data(), g.data(), cfg.lr);
        EXPECT_EQ(opt.steps_taken(), step);
        const std::vector<double> want = golden.theta(step);
        for (std::size_t i = 0; i < p.size(); ++i) EXPECT_NEAR(p[i], want[i], 2e-7);
    }
    EXPECT_EQ(opt.m().size(), p.size());
    EXPECT_EQ(opt.v().size(), p.size());
}

TEST(OptimAdamW, RejectsInvalidHyperparameters) {
    AdamWConfig bad;
    bad.beta2 = 1.0;
    EXPECT_THROW(AdamW(bad, 4), Error);
    bad = AdamWConfig{};
    bad.eps = -1.0;
    EXPECT_THROW(AdamW(bad, 4), Error);
    AdamW ok(AdamWConfig{}, 1);
    float p = 0.0f, g = 1.0f;
    EXPECT_THROW(ok.step(&p, &g, std::nan("")), Error);
}

// ---------------------------------------------------------------------------------------------
// LR schedule. Notation: s is the 1-based training step, c = s - 1 the LambdaLR index,
// W = warmup, S = stable = steps + 1 - W - D, D = decay.
//   c < W:      (c + 1) / W
//   c < W + S:  1
//   otherwise:  p = (c + 1 - W - S) / D, adj = 1 - p | 1 - sqrt(p) | (1 + cos(pi p)) / 2,
//               min + (1 - min) adj
// (Current torchtitan divides the warm-up by W: the first step of a 200-step warm-up is 1/200.
// The 1/201 of older torchtitan came with a different stable/decay split; see lr_schedule.cpp.)

LrSchedule make_schedule(int warmup, double decay_ratio, const std::string& type, int steps,
                         double min_factor = 0.0) {
    LrScheduleConfig cfg;
    cfg.warmup_steps = warmup;
    cfg.decay_ratio = decay_ratio;
    cfg.decay_type = type;
    cfg.min_lr_factor = min_factor;
    return LrSchedule(cfg, steps);
}

constexpr double kTight = 1e-15;

TEST(LrSchedule, WarmupOnly) {
    // steps 1000, W 200, decay_ratio 0 -> D 0, S 801.
    const LrSchedule s = make_schedule(200, 0.0, "linear", 1000);
    EXPECT_EQ(s.warmup_steps(), 200);
    EXPECT_EQ(s.decay_steps(), 0);
    EXPECT_EQ(s.stable_steps(), 801);
    EXPECT_NEAR(s.factor(1), 1.0 / 200.0, kTight);
    EXPECT_NEAR(s.factor(2), 2.0 / 200.0, kTight);
    EXPECT_NEAR(s.factor(100), 0.5, kTight);
    EXPECT_EQ(s.factor(200), 1.0);
    EXPECT_EQ(s.factor(201), 1.0);
    EXPECT_EQ(s.factor(1000), 1.0);
}

TEST(LrSchedule, WarmupStableLinearDecay) {
    // steps 100, W 10, decay_ratio 0.2 -> D 20, S 100 + 1 - 10 - 20 = 71, W + S = 81.
    const LrSchedule s = make_schedule(10, 0.2, "linear", 100);
    EXPECT_EQ(s.decay_steps(), 20);
    EXPECT_EQ(s.stable_steps(), 71);
    EXPECT_NEAR(s.factor(1), 0.1, kTight);
    EXPECT_EQ(s.factor(10), 1.0);              // c = 9: 10 / 10
    EXPECT_EQ(s.factor(11), 1.0);              // stable
    EXPECT_EQ(s.factor(81), 1.0);              // c = 80 < 81: last stable step
    EXPECT_NEAR(s.factor(82), 0.95, kTight);   // p = (82 - 81) / 20 = 0.05
    EXPECT_NEAR(s.factor(91), 0.5, kTight);    // p = 10 / 20
    EXPECT_NEAR(s.factor(100), 0.05, kTight);  // p = 19 / 20: the last step is not 0
    EXPECT_NEAR(s.factor(101), 0.0, kTight);   // the virtual step after the end
}

TEST(LrSchedule, WarmupStableSqrtDecay) {
    const LrSchedule s = make_schedule(10, 0.2, "sqrt", 100);
    EXPECT_NEAR(s.factor(5), 0.5, kTight);
    EXPECT_EQ(s.factor(81), 1.0);
    EXPECT_NEAR(s.factor(82), 1.0 - std::sqrt(0.05), kTight);
    EXPECT_NEAR(s.factor(91), 1.0 - std::sqrt(0.5), kTight);
    EXPECT_NEAR(s.factor(100), 1.0 - std::sqrt(0.95), kTight);
}

TEST(LrSchedule, WarmupStableCosineDecay) {
    const LrSchedule s = make_schedule(10, 0.2, "cosine", 100);
    EXPECT_NEAR(s.factor(3), 0.3, kTight);
    EXPECT_EQ(s.factor(81), 1.0);
    EXPECT_NEAR(s.factor(82), 0.5 * (1.0 + std::cos(std::numbers::pi * 0.05)), kTight);
    EXPECT_NEAR(s.factor(91), 0.5, kTight);  // cos(pi / 2) = 0
    EXPECT_NEAR(s.factor(100), 0.5 * (1.0 + std::cos(std::numbers::pi * 0.95)), kTight);
    EXPECT_NEAR(s.factor(101), 0.0, kTight);
}

TEST(LrSchedule, MinLrFactorScalesOnlyTheDecay) {
    // steps 100, W 4, decay_ratio 0.2 -> D 20, S 77, W + S = 81; min 0.1.
    const LrSchedule s = make_schedule(4, 0.2, "linear", 100, 0.1);
    EXPECT_NEAR(s.factor(1), 0.25, kTight);  // warm-up ignores min_lr_factor
    EXPECT_EQ(s.factor(50), 1.0);
    EXPECT_NEAR(s.factor(91), 0.1 + 0.9 * 0.5, kTight);    // 0.55
    EXPECT_NEAR(s.factor(100), 0.1 + 0.9 * 0.05, kTight);  // 0.145
    EXPECT_NEAR(s.factor(101), 0.1, kTight);
}

TEST(LrSchedule, DecayRatioNoneDecaysAfterWarmup) {
    // steps 50, W 10, no ratio -> D 40, S 1, W + S = 11.
    const LrSchedule s = make_schedule(10, -1.0, "linear", 50);
    EXPECT_EQ(s.decay_steps(), 40);
    EXPECT_EQ(s.stable_steps(), 1);
    EXPECT_EQ(s.factor(10), 1.0);
    EXPECT_EQ(s.factor(11), 1.0);              // c = 10: the one stable step
    EXPECT_NEAR(s.factor(12), 0.975, kTight);  // p = 1 / 40
    EXPECT_NEAR(s.factor(50), 0.025, kTight);  // p = 39 / 40
}

TEST(LrSchedule, SeedDefaultsFor2B) {
    // design.md's 2B defaults: W 200, decay_ratio 0.8, linear to 0; with 1000 steps D 800, S 1.
    const LrSchedule s = make_schedule(200, 0.8, "linear", 1000);
    EXPECT_EQ(s.decay_steps(), 800);
    EXPECT_EQ(s.stable_steps(), 1);
    EXPECT_NEAR(s.factor(1), 1.0 / 200.0, kTight);
    EXPECT_EQ(s.factor(200), 1.0);
    EXPECT_EQ(s.factor(201), 1.0);
    EXPECT_NEAR(s.factor(202), 1.0 - 1.0 / 800.0, kTight);
    EXPECT_NEAR(s.factor(1000), 1.0 / 800.0, kTight);
}

TEST(LrSchedule, WarmupLongerThanTrainingIsClamped) {
    // W 200 > steps 50 -> W 50, D 0, S 1.
    const LrSchedule s = make_schedule(200, -1.0, "linear", 50);
    EXPECT_EQ(s.warmup_steps(), 50);
    EXPECT_EQ(s.decay_steps(), 0);
    EXPECT_EQ(s.stable_steps(), 1);
    EXPECT_NEAR(s.factor(1), 1.0 / 50.0, kTight);
    EXPECT_NEAR(s.factor(25), 0.5, kTight);
    EXPECT_EQ(s.factor(50), 1.0);
}

TEST(LrSchedule, DecayClampedToFitAfterWarmup) {
    // steps 50, W 30, decay_ratio 0.8 -> round(40) = 40, 30 + 40 > 50 -> D 20, S 1.
    const LrSchedule s = make_schedule(30, 0.8, "linear", 50);
    EXPECT_EQ(s.decay_steps(), 20);
    EXPECT_EQ(s.stable_steps(), 1);
    EXPECT_NEAR(s.factor(32), 0.95, kTight);  // c = 31 >= 31, p = (32 - 31) / 20
}

TEST(LrSchedule, DecayStepsRoundHalfToEvenLikePython) {
    // round(2.5) = 2, round(7.5) = 8, round(3.5) = 4 in Python 3.
    EXPECT_EQ(make_schedule(0, 0.25, "linear", 10).decay_steps(), 2);
    EXPECT_EQ(make_schedule(0, 0.25, "linear", 30).decay_steps(), 8);
    EXPECT_EQ(make_schedule(0, 0.25, "linear", 14).decay_steps(), 4);
    EXPECT_EQ(make_schedule(0, 0.3, "linear", 10).decay_steps(), 3);
}

TEST(LrSchedule, ZeroWarmupStartsAtFullLr) {
    // steps 10, W 0, no ratio -> D 10, S 1.
    const LrSchedule s = make_schedule(0, -1.0, "linear", 10);
    EXPECT_EQ(s.factor(1), 1.0);
    EXPECT_NEAR(s.factor(2), 0.9, kTight);
    EXPECT_NEAR(s.factor(10), 0.1, kTight);
}

TEST(LrSchedule, MonotoneInEachPhaseAndEndsAtMinOnTheVirtualStep) {
    for (const char* type : {"linear", "sqrt", "cosine"}) {
        for (double min_factor : {0.0, 0.1}) {
            const int steps = 300;
            const LrSchedule s = make_schedule(40, 0.5, type, steps, min_factor);
            const int warmup_end = s.warmup_steps();
            for (int t = 2; t <= warmup_end; ++t)
                EXPECT_GT(s.factor(t), s.factor(t - 1)) << type << " step " << t;
            for (int t = warmup_end + 1; t <= steps + 1; ++t) {
                EXPECT_LE(s.factor(t), s.factor(t - 1)) << type << " step " << t;
                EXPECT_GE(s.factor(t), min_factor - 1e-15) << type << " step " << t;
                EXPECT_LE(s.factor(t), 1.0) << type << " step " << t;
            }
            // The decay covers the end: the lr reaches min_lr_factor on the step after the last
            // and stays above it on the last one.
            EXPECT_NEAR(s.factor(steps + 1), min_factor, 1e-15) << type;
            EXPECT_GT(s.factor(steps), min_factor) << type;
        }
    }
}

TEST(LrSchedule, RejectsBadConfigs) {
    EXPECT_THROW(make_schedule(10, 0.2, "exponential", 100), Error);
    EXPECT_THROW(make_schedule(10, 0.2, "Linear", 100), Error);
    EXPECT_THROW(make_schedule(-1, 0.2, "linear", 100), Error);
    EXPECT_THROW(make_schedule(10, 0.2, "linear", 0), Error);
    EXPECT_THROW(make_schedule(10, 0.2, "linear", 100, 1.5), Error);
    EXPECT_THROW(make_schedule(10, 0.2, "linear", 100).factor(0), Error);
}

// ---------------------------------------------------------------------------------------------
// Gradient clipping.

double naive_norm(const std::vector<float>& g) {
    double sum = 0.0;
    for (float x : g) sum += static_cast<double>(x) * x;
    return std::sqrt(sum);
}

TEST(ClipGradNorm, NormMatchesNaiveDoubleSum) {
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{15}, kGradNormBlock,
                          3 * kGradNormBlock + 17, std::size_t{1} << 20}) {
        const std::vector<float> g = random_floats(n, 7, 1e-2f);
        EXPECT_NEAR(global_grad_norm(g.data(), n), naive_norm(g), 1e-12 * naive_norm(g) + 1e-300)
            << "n = " << n;
    }
    const std::vector<float> g = {3.0f, 4.0f};
    EXPECT_EQ(global_grad_norm(g.data(), g.size()), 5.0);
}

TEST(ClipGradNorm, ClipsToMaxNorm) {
    const std::size_t n = 2 * kGradNormBlock + 5;
    std::vector<float> g = random_floats(n, 11, 1.0f);
    const std::vector<float> original = g;
    const double before = naive_norm(g);
    const double max_norm = before / 4.0;
    EXPECT_NEAR(clip_grad_norm(g.data(), n, max_norm), before, 1e-12 * before);
    // torch's 1e-6 in the denominator leaves the result a hair under max_norm.
    EXPECT_NEAR(global_grad_norm(g.data(), n), max_norm, 1e-6 * max_norm);
    const float coef = static_cast<float>(max_norm / (global_grad_norm(original.data(), n) + 1e-6));
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(g[i], original[i] * coef) << i;
}

TEST(ClipGradNorm, LeavesGradientsBelowMaxNormUntouched) {
    const std::size_t n = 1000;
    std::vector<float> g = random_floats(n, 12, 1.0f);
    const std::vector<float> original = g;
    const double norm = naive_norm(g);
    EXPECT_NEAR(clip_grad_norm(g.data(), n, norm * 2.0), norm, 1e-12 * norm);
    EXPECT_TRUE(bit_equal(g, original));
    // max_norm <= 0 disables clipping but still reports the norm.
    EXPECT_NEAR(clip_grad_norm(g.data(), n, 0.0), norm, 1e-12 * norm);
    EXPECT_TRUE(bit_equal(g, original));
}

TEST(ClipGradNorm, BitIdenticalAcrossThreadCounts) {
    ThreadCountGuard guard;
    for (std::size_t n : {5 * kGradNormBlock + 123, (std::size_t{1} << 20) + 5}) {
        const std::vector<float> g0 = random_floats(n, 13, 0.5f);
        std::vector<double> norms;
        std::vector<std::vector<float>> clipped;
        for (int threads : {1, 2, 3}) {
            omp_set_num_threads(threads);
            norms.push_back(global_grad_norm(g0.data(), n));
            std::vector<float> g = g0;
            clip_grad_norm(g.data(), n, 1.0);
            clipped.push_back(g);
        }
        for (std::size_t k = 1; k < norms.size(); ++k) {
            EXPECT_EQ(std::memcmp(&norms[0], &norms[k], sizeof(double)), 0) << "n = " << n;
            EXPECT_TRUE(bit_equal(clipped[0], clipped[k])) << "n = " << n;
        }
    }
}

TEST(ClipGradNorm, NonFiniteGradientGivesNonFiniteNorm) {
    std::vector<float> g = {1.0f, std::nanf(""), 2.0f};
    EXPECT_TRUE(std::isnan(clip_grad_norm(g.data(), g.size(), 1.0)));
    std::vector<float> h = {1.0f, INFINITY, 2.0f};
    EXPECT_TRUE(std::isinf(global_grad_norm(h.data(), h.size())));
}

}  // namespace
}  // namespace agpt
