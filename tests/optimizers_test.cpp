// The optimizer library: Muon against PyTorch's golden vectors, the defining property of every
// other optimizer (from its paper and reference code), routing by role, exact save/restore, and
// short training runs on the bundled corpus.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/byte_tokenizer.h"
#include "data/text_dataset.h"
#include "kernels/cpu/adamw.h"
#include "kernels/cpu/newton_schulz.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "optim/ademamix.h"
#include "optim/optimizer.h"
#include "optim/spam.h"

// Expected values below repeat the kernels' float operations one rounding at a time.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace agpt {
namespace {

using nlohmann::json;

json load_golden() {
    const std::string path = std::string(AGPT_TEST_DATA_DIR) + "/optimizer_golden.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    return json::parse(in);
}

class ThreadCountGuard {
  public:
    ThreadCountGuard() : saved_(omp_get_max_threads()) {}
    ~ThreadCountGuard() { omp_set_num_threads(saved_); }

  private:
    int saved_;
};

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// ---- a synthetic parameter set shaped like a small transformer ---------------------------------

struct ParamSpec {
    std::string name, role;
    std::vector<int> shape;
};

const std::vector<ParamSpec>& mini_layout() {
    static const std::vector<ParamSpec> layout = {
        {"tok_embeddings.weight", "embedding", {16, 8}},
        {"layers.0.attention_norm.weight", "norm", {8}},
        {"layers.0.attention.wq.weight", "attention", {8, 8}},
        {"layers.0.attention.wk.weight", "attention", {4, 8}},
        {"layers.0.attention.wo.weight", "attention", {8, 8}},
        {"layers.0.attention.wo.bias", "attention", {8}},
        {"layers.0.ffn_norm.weight", "norm", {8}},
        {"layers.0.feed_forward.w1.weight", "ffn", {12, 8}},
        {"layers.0.feed_forward.w2.weight", "ffn", {8, 12}},
        {"layers.0.feed_forward.bias", "bias", {12}},
        {"norm.weight", "norm", {8}},
        {"output.weight", "head", {16, 8}},
    };
    return layout;
}

// Values and gradients in one flat buffer each, as the model holds them.
struct Params {
    std::vector<ParamSpec> layout;
    std::vector<float> values, grads;
    std::vector<std::size_t> offsets;

    explicit Params(const std::vector<ParamSpec>& l, unsigned seed = 7) : layout(l) {
        std::size_t n = 0;
        for (const auto& p : layout) {
            offsets.push_back(n);
            std::size_t k = 1;
            for (int d : p.shape) k *= static_cast<std::size_t>(d);
            n += k;
        }
        values.resize(n);
        grads.assign(n, 0.0f);
        std::mt19937 rng(seed);
        std::normal_distribution<float> dist(0.0f, 0.5f);
        for (auto& v : values) v = dist(rng);
        for (std::size_t i = 0; i < layout.size(); ++i)
            if (layout[i].role == "norm")
                for (std::size_t j = 0; j < static_cast<std::size_t>(layout[i].shape[0]); ++j)
                    values[offsets[i] + j] = 1.0f;
    }
    std::vector<OptimParam> views() {
        std::vector<OptimParam> out;
        for (std::size_t i = 0; i < layout.size(); ++i)
            out.push_back({layout[i].name, layout[i].role, layout[i].shape,
                           values.data() + offsets[i], grads.data() + offsets[i]});
        return out;
    }
    // A gradient that depends only on the values and the step, so an interrupted run sees the
    // same gradients as an uninterrupted one.
    void fill_grads(long step) {
        for (std::size_t i = 0; i < values.size(); ++i)
            grads[i] = 0.5f * (values[i] - 0.1f * static_cast<float>(i % 7)) +
                       0.3f * static_cast<float>(std::sin(1.3 * static_cast<double>(i) +
                                                          0.7 * static_cast<double>(step)));
    }
    // The stand-in for SophiaG's Gauss–Newton–Bartlett gradient.
    void fill_hessian_grads(long step) {
        for (std::size_t i = 0; i < values.size(); ++i)
            grads[i] = 0.2f * static_cast<float>(std::cos(3.0 * values[i] + 0.1 * step + i));
    }
};

OptimizerSpec spec_of(const std::string& name, std::map<std::string, HyperValue> hyper = {},
                      std::map<std::string, HyperValue> adamw = {}) {
    OptimizerSpec s;
    s.name = name;
    s.hyper = std::move(hyper);
    s.adamw = std::move(adamw);
    return s;
}

std::unique_ptr<Optimizer> make_for(const OptimizerSpec& spec, Params& p) {
    auto opt = make_optimizer(spec, p.views());
    if (opt->needs_hessian_hook()) {
        Optimizer* raw = opt.get();
        opt->set_hessian_hook([&p, raw] { p.fill_hessian_grads(raw->steps_taken()); });
    }
    return opt;
}

double lr_factor(long step) {
    return 0.6 + 0.4 * std::cos(0.3 * static_cast<double>(step));
}

// Copies of every state tensor, as a checkpoint would hold them.
struct SavedState {
    std::map<std::string, std::vector<unsigned char>> bytes;
    std::map<std::string, SavedStateTensor> tensors;
};

SavedState save_state(Optimizer& opt) {
    SavedState s;
    for (const auto& t : opt.state_tensors()) {
        auto& b = s.bytes[t.name];
        b.resize(t.nbytes());
        if (!b.empty()) std::memcpy(b.data(), t.data, b.size());
    }
    for (const auto& t : opt.state_tensors())
        s.tensors[t.name] = {t.dtype, t.shape, s.bytes[t.name].data()};
    return s;
}

std::vector<float> state_values(Optimizer& opt, const std::string& name) {
    for (const auto& t : opt.state_tensors())
        if (t.name == name) {
            const float* f = static_cast<const float*>(t.data);
            return std::vector<float>(f, f + t.numel());
        }
    ADD_FAILURE() << "no state tensor " << name;
    return {};
}

// ---- registry, specs, routing ---------------------------------------------------------------

TEST(Optimizers, RegistryListsEveryOptimizerWithKeysAndSources) {
    const std::vector<std::string> want = {
        "AdamW", "Muon", "Mano", "SophiaG", "SPAM", "Lion", "ScheduleFreeAdamW", "AdEMAMix"};
    for (const auto& name : want) {
        const OptimizerInfo& info = optimizer_info(name);
        EXPECT_EQ(info.name, name);
        EXPECT_FALSE(info.description.empty());
        EXPECT_FALSE(info.paper.empty());
        EXPECT_FALSE(info.keys.empty());
        // Every default is valid for its own key.
        EXPECT_NO_THROW(Hyper(name, info.keys, {}));
    }
    EXPECT_TRUE(optimizer_info("Muon").routes_to_adamw);
    EXPECT_TRUE(optimizer_info("Mano").routes_to_adamw);
    EXPECT_FALSE(optimizer_info("Lion").routes_to_adamw);
    EXPECT_EQ(optimizer_info("muon").name, "Muon");  // case-insensitive
    const std::string text = describe_optimizers();
    for (const auto& name : want) EXPECT_NE(text.find(name + ":"), std::string::npos) << name;
    EXPECT_NE(text.find("2601.23000"), std::string::npos);
    EXPECT_NE(text.find("2501.06842"), std::string::npos);
}

TEST(Optimizers, BadSpecsFailWithOneClearLine) {
    Params p(mini_layout());
    auto expect_error = [&](const OptimizerSpec& spec, const std::string& part) {
        try {
            make_optimizer(spec, p.views());
            ADD_FAILURE() << "no error for " << part;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
        }
    };
    expect_error(spec_of("Adam"), "unknown name 'Adam'");
    expect_error(spec_of("Muon", {{"momentun", 0.9}}), "unknown key 'momentun'");
    expect_error(spec_of("Muon", {{"adjust_lr_fn", std::string("rms")}}), "must be one of");
    expect_error(spec_of("Muon", {{"ns_steps", 2.5}}), "whole number");
    expect_error(spec_of("Muon", {{"nesterov", std::string("maybe")}}), "true or false");
    expect_error(spec_of("Muon", {}, {{"beta3", 0.9}}), "optimizer.adamw: unknown key 'beta3'");
    expect_error(spec_of("Lion", {}, {{"lr", 1e-3}}), "routes no parameter to AdamW");
    expect_error(spec_of("AdamW", {{"beta2", 1.5}}), "beta2");
    expect_error(spec_of("Muon", {}, {{"lr", -1.0}}), "learning rate");
    // Text booleans and numeric choices are accepted.
    EXPECT_NO_THROW(
        make_optimizer(spec_of("Muon", {{"nesterov", std::string("false")}}), p.views()));
    EXPECT_NO_THROW(make_optimizer(spec_of("Mano", {{"version", 2.0}}), p.views()));
}

TEST(Optimizers, MatrixOptimizersRouteByRoleNotRank) {
    Params p(mini_layout());
    for (const std::string name : {"Muon", "Mano"}) {
        auto opt = make_optimizer(spec_of(name), p.views());
        const auto routes = opt->describe_routing();
        ASSERT_EQ(routes.size(), mini_layout().size());
        for (std::size_t i = 0; i < routes.size(); ++i) {
            const auto& spec = mini_layout()[i];
            EXPECT_EQ(routes[i].param, spec.name);
            const bool hidden =
                spec.shape.size() == 2 && (spec.role == "attention" || spec.role == "ffn");
            // Embedding and head are 2-D and still go to AdamW; a 1-D attention bias too.
            EXPECT_EQ(routes[i].optimizer, hidden ? name : "AdamW") << spec.name;
        }
        const std::string table = routing_table(*opt);
        EXPECT_NE(table.find("tok_embeddings.weight"), std::string::npos);
        EXPECT_NE(table.find(name + ": 5 tensors, 352 parameters"), std::string::npos) << table;
    }
    auto lion = make_optimizer(spec_of("Lion"), p.views());
    for (const auto& r : lion->describe_routing()) EXPECT_EQ(r.optimizer, "Lion");
}

TEST(Optimizers, AdamWMatchesTheExistingAdamWBitForBit) {
    Params a(mini_layout()), b(mini_layout());
    AdamWConfig cfg;
    cfg.lr = 3e-3;
    AdamW reference(cfg, a.values.size());
    auto opt = make_optimizer(spec_of("AdamW", {{"lr", 3e-3}}), b.views());
    for (long s = 1; s <= 5; ++s) {
        a.fill_grads(s);
        b.fill_grads(s);
        reference.step(a.values.data(), a.grads.data(), cfg.lr * lr_factor(s));
        opt->step(lr_factor(s));
    }
    EXPECT_TRUE(bit_equal(a.values, b.values));
    EXPECT_EQ(opt->steps_taken(), 5);
    EXPECT_DOUBLE_EQ(opt->last_lr(), 3e-3 * lr_factor(5));
}

TEST(Optimizers, UserOptimizersCanBeRegistered) {
    OptimizerInfo info;
    info.name = "TestSignSGD";
    info.description = "sign SGD for the registry test";
    info.paper = "none";
    info.keys = {{"lr", HyperKind::kNumber, 0.5, "learning rate", {}}};
    struct SignSgd final : Optimizer {
        std::string n = "TestSignSGD";
        double lr;
        std::vector<OptimParam> ps;
        long steps = 0;
        SignSgd(double l, std::vector<OptimParam> p) : lr(l), ps(std::move(p)) {}
        const std::string& name() const override { return n; }
        void step(double f) override {
            for (auto& p : ps)
                for (std::size_t i = 0; i < p.numel(); ++i)
                    p.value[i] -= static_cast<float>(lr * f) * (p.grad[i] > 0 ? 1.0f : -1.0f);
            ++steps;
        }
        long steps_taken() const override { return steps; }
        double last_lr() const override { return lr; }
        std::vector<OptimStateTensor> state_tensors() override { return {}; }
        std::vector<RoutingEntry> describe_routing() const override { return {}; }
    };
    info.factory = [](const Hyper& h, const Hyper&, std::vector<OptimParam> params) {
        return std::unique_ptr<Optimizer>(new SignSgd(h.num("lr"), std::move(params)));
    };
    register_optimizer(info);
    EXPECT_THROW(register_optimizer(info), Error);
    Params p({{"w", "ffn", {2}}});
    p.values = {1.0f, 1.0f};
    p.grads = {1.0f, -1.0f};
    auto opt = make_optimizer(spec_of("TestSignSGD"), p.views());
    opt->step(1.0);
    EXPECT_EQ(p.values, (std::vector<float>{0.5f, 1.5f}));
    EXPECT_NE(describe_optimizers().find("TestSignSGD"), std::string::npos);
}

// ---- state: exact save and restore ----------------------------------------------------------

struct ResumeCase {
    std::string label;
    OptimizerSpec spec;
};

std::vector<ResumeCase> resume_cases() {
    return {
        {"AdamW", spec_of("AdamW", {{"lr", 1e-2}})},
        {"Muon", spec_of("Muon", {{"lr", 0.02}}, {{"lr", 1e-2}})},
        {"MuonBf16MatchRms", spec_of("Muon", {{"ns_precision", std::string("bf16")},
                                              {"adjust_lr_fn", std::string("match_rms_adamw")}})},
        {"ManoV1", spec_of("Mano", {{"lr", 1e-2}})},
        {"ManoV2", spec_of("Mano", {{"version", std::string("2")}, {"lr", 1e-2}})},
        {"SophiaG", spec_of("SophiaG", {{"lr", 1e-2}, {"hessian_interval", 3.0}, {"bs", 8.0}})},
        {"SPAM", spec_of("SPAM", {{"lr", 1e-2},
                                  {"delta_t", 5.0},
                                  {"warmup_steps", 3.0},
                                  {"grad_accu_steps", 2.0},
                                  {"threshold", 2.0},
                                  {"weight_decay", 0.01}})},
        {"Lion", spec_of("Lion", {{"lr", 1e-3}, {"weight_decay", 0.1}})},
        {"ScheduleFreeAdamW",
         spec_of("ScheduleFreeAdamW",
                 {{"lr", 1e-2}, {"warmup_steps", 4.0}, {"weight_decay", 0.01}})},
        {"AdEMAMix",
         spec_of(
             "AdEMAMix",
             {{"lr", 1e-2}, {"alpha_warmup", 6.0}, {"beta3_warmup", 6.0}, {"weight_decay", 0.01}})},
    };
}

// Runs 2k steps straight, and k steps, a checkpoint (eval mode, state copied, train mode), a
// fresh optimizer restored from it, and k more: parameters and state must agree bit for bit.
TEST(Optimizers, SaveLoadContinueIsBitIdenticalForEveryOptimizer) {
    constexpr long k = 7;  // odd, so Mano resumes on the other axis
    for (const auto& c : resume_cases()) {
        SCOPED_TRACE(c.label);
        Params straight(mini_layout());
        auto a = make_for(c.spec, straight);
        for (long s = 1; s <= 2 * k; ++s) {
            straight.fill_grads(s);
            a->step(lr_factor(s));
        }

        Params first(mini_layout());
        auto b = make_for(c.spec, first);
        for (long s = 1; s <= k; ++s) {
            first.fill_grads(s);
            b->step(lr_factor(s));
        }
        b->eval_mode();
        const std::vector<float> saved_values = first.values;
        SavedState saved = save_state(*b);
        b->train_mode();
        b.reset();

        Params resumed(mini_layout(), /*seed=*/99);  // different init, overwritten below
        resumed.values = saved_values;
        auto r = make_for(c.spec, resumed);
        r->load_state(saved.tensors);
        r->train_mode();
        EXPECT_EQ(r->steps_taken(), k);
        for (long s = k + 1; s <= 2 * k; ++s) {
            resumed.fill_grads(s);
            r->step(lr_factor(s));
        }
        EXPECT_TRUE(bit_equal(straight.values, resumed.values));
        const SavedState end_a = save_state(*a), end_r = save_state(*r);
        EXPECT_EQ(end_a.bytes, end_r.bytes);
        EXPECT_FALSE(end_a.bytes.empty());
    }
}

TEST(Optimizers, LoadStateRejectsMissingExtraAndMisshapenTensors) {
    Params p(mini_layout());
    auto opt = make_for(spec_of("Muon"), p);
    p.fill_grads(1);
    opt->step(1.0);
    SavedState s = save_state(*opt);
    auto expect_error = [&](std::map<std::string, SavedStateTensor> t, const std::string& part) {
        Params q(mini_layout());
        auto fresh = make_for(spec_of("Muon"), q);
        try {
            fresh->load_state(t);
            ADD_FAILURE() << "no error for " << part;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
        }
    };
    auto missing = s.tensors;
    missing.erase("muon.layers.0.attention.wq.weight.momentum_buffer");
    expect_error(missing, "has no state 'muon.layers.0.attention.wq.weight.momentum_buffer'");
    auto extra = s.tensors;
    extra["lion.step"] = extra["muon.step"];
    expect_error(extra, "holds state 'lion.step'");
    auto misshapen = s.tensors;
    misshapen["adamw.output.weight.exp_avg"].shape = {8, 16};
    expect_error(misshapen, "state 'adamw.output.weight.exp_avg' is F32 8x16");
    // Another optimizer's checkpoint.
    Params q(mini_layout());
    auto lion = make_for(spec_of("Lion"), q);
    EXPECT_THROW(lion->load_state(s.tensors), Error);
}

// ---- Muon: golden vectors -------------------------------------------------------------------

struct MuonGolden {
    json g = load_golden()["muon"];
    static std::vector<float> theta0(int A, int B) {
        std::vector<float> w(static_cast<std::size_t>(A) * B);
        for (int i = 0; i < A * B; ++i) w[i] = static_cast<float>(i) / 10.0f - 0.5f;
        return w;
    }
    static std::vector<float> grad(int A, int B, int k) {
        std::vector<float> g(static_cast<std::size_t>(A) * B);
        for (int i = 0; i < A; ++i)
            for (int j = 0; j < B; ++j)
                g[i * B + j] = static_cast<float>(std::cos(1.1 * i * j + i + 2 * j + k) + 0.1 * k);
        return g;
    }
    // theta after `steps` Muon steps on an A x B "attention" matrix.
    std::vector<float> run(int A, int B, int steps, const std::string& adjust,
                           const std::string& precision) const {
        const auto& h = g["hyper"];
        Params p({{"w", "attention", {A, B}}});
        p.values = theta0(A, B);
        auto opt =
            make_optimizer(spec_of("Muon", {{"lr", h["lr"].get<double>()},
                                            {"weight_decay", h["weight_decay"].get<double>()},
                                            {"momentum", h["momentum"].get<double>()},
                                            {"nesterov", h["nesterov"].get<bool>() ? 1.0 : 0.0},
                                            {"ns_steps", h["ns_steps"].get<double>()},
                                            {"eps", h["eps"].get<double>()},
                                            {"adjust_lr_fn", adjust},
                                            {"ns_precision", precision}}),
                           p.views());
        for (int k = 1; k <= steps; ++k) {
            const std::vector<float> gk = grad(A, B, k);
            std::copy(gk.begin(), gk.end(), p.grads.begin());  // the optimizer holds the buffer
            opt->step(1.0);
        }
        return p.values;
    }
    std::vector<double> want(const std::string& shape, const std::string& adjust,
                             const std::string& key) const {
        return g[shape][adjust][key].get<std::vector<double>>();
    }
};

void expect_close(const std::vector<float>& got, const std::vector<double>& want, double tol,
                  const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    double worst = 0.0;
    for (std::size_t i = 0; i < got.size(); ++i)
        worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i]));
    EXPECT_LE(worst, tol) << what;
}

TEST(Muon, GradientRuleReproducesGoldenG1) {
    MuonGolden m;
    expect_close(MuonGolden::grad(4, 3, 1), m.g["tall_4x3"]["G1"].get<std::vector<double>>(), 1e-6,
                 "G1");
}

TEST(Muon, NewtonSchulzFp64MatchesTorchFloat64) {
    MuonGolden m;
    const double tol = m.g["tolerances"]["newton_schulz_float64_vs_ns5_G1_float64"].get<double>();
    const auto& h = m.g["hyper"];
    cpu::NsCoefficients coef;
    coef.a = h["ns_coefficients"][0].get<double>();
    coef.b = h["ns_coefficients"][1].get<double>();
    coef.c = h["ns_coefficients"][2].get<double>();
    for (auto [shape, A, B] : {std::tuple{"tall_4x3", 4, 3}, std::tuple{"wide_3x4", 3, 4}}) {
        std::vector<double> G(static_cast<std::size_t>(A) * B), out(G.size());
        for (int i = 0; i < A; ++i)
            for (int j = 0; j < B; ++j) G[i * B + j] = std::cos(1.1 * i * j + i + 2 * j + 1) + 0.1;
        cpu::NsScratch<double> scratch;
        cpu::newton_schulz<double>(G.data(), out.data(), A, B, coef, 5, h["eps"].get<double>(),
                                   false, scratch);
        const auto want = m.g[shape]["ns5_G1_float64"].get<std::vector<double>>();
        for (std::size_t i = 0; i < out.size(); ++i)
            EXPECT_NEAR(out[i], want[i], tol) << shape << " entry " << i;
    }
}

TEST(Muon, NewtonSchulzBf16MatchesTorchBf16) {
    MuonGolden m;
    const double tol = m.g["tolerances"]["bf16_vs_torch_bf16_per_entry"].get<double>();
    std::vector<float> G = MuonGolden::grad(4, 3, 1), out(G.size());
    cpu::NsScratch<float> scratch;
    cpu::newton_schulz<float>(G.data(), out.data(), 4, 3, {}, 5, 1e-7, true, scratch);
    const auto want = m.g["tall_4x3"]["ns5_G1_torch_bf16"].get<std::vector<double>>();
    for (std::size_t i = 0; i < out.size(); ++i) {
        EXPECT_NEAR(out[i], want[i], tol) << "entry " << i;
        EXPECT_EQ(out[i], cpu::round_to_bf16(out[i])) << "not a bf16 value";
    }
}

TEST(Muon, ThreeStepsMatchTorchForBothAdjustmentsTallAndWide) {
    MuonGolden m;
    const double tol = m.g["tolerances"]["three_step_update_vs_torch"].get<double>();
    for (auto [shape, A, B] : {std::tuple{"tall_4x3", 4, 3}, std::tuple{"wide_3x4", 3, 4}}) {
        for (const std::string adjust : {"original", "match_rms_adamw"}) {
            const std::string what = std::string(shape) + " " + adjust;
            // torch runs Newton–Schulz in bf16: the emulation is compared with its vectors.
            expect_close(m.run(A, B, 3, adjust, "bf16"), m.want(shape, adjust, "3"), tol,
                         what + " bf16");
            if (m.g[shape][adjust].contains("1"))
                expect_close(m.run(A, B, 1, adjust, "bf16"), m.want(shape, adjust, "1"), tol,
                             what + " step 1");
        }
        // Against torch with Newton–Schulz in float64: agpt's fp64 and fp32 modes.
        const auto want64 = m.want(shape, "original", "3_float64_newton_schulz");
        expect_close(m.run(A, B, 3, "original", "fp64"), want64, 1e-6,
                     std::string(shape) + " fp64");
        expect_close(m.run(A, B, 3, "original", "fp32"), want64, 1e-5,
                     std::string(shape) + " fp32");
    }
}

TEST(Muon, OrthogonalisesTallAndWideMatrices) {
    // Singular values of the result land in the quintic's band around 1.
    for (auto [A, B] : {std::pair{48, 16}, std::pair{16, 48}}) {
        std::vector<float> G(static_cast<std::size_t>(A) * B), out(G.size());
        std::mt19937 rng(3);
        std::normal_distribution<float> d(0.0f, 1.0f);
        for (auto& x : G) x = d(rng);
        cpu::NsScratch<float> scratch;
        cpu::newton_schulz<float>(G.data(), out.data(), A, B, {}, 5, 1e-7, false, scratch);
        const int r = std::min(A, B);
        // Oᵀ·O (or O·Oᵀ) on the small side: its diagonal holds the squared singular values mixed,
        // its trace the sum of their squares.
        double trace = 0.0;
        for (float x : out) trace += static_cast<double>(x) * x;
        EXPECT_GT(trace / r, 0.5);
        EXPECT_LT(trace / r, 1.5);
    }
}

TEST(Muon, NewtonSchulzNeverOverflows) {
    // The seed's bf16 run overflowed at width 9216; here a 9216 x 64 matrix of 1e30 entries
    // (and its transpose) stays finite in every precision.
    const int A = 9216, B = 64;
    std::vector<float> G(static_cast<std::size_t>(A) * B);
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> d(-1.0f, 1.0f);
    for (auto& x : G) x = 1e30f * d(rng);
    for (bool bf16 : {false, true}) {
        for (auto [r, c] : {std::pair{A, B}, std::pair{B, A}}) {
            std::vector<float> out(G.size());
            cpu::NsScratch<float> scratch;
            cpu::newton_schulz<float>(G.data(), out.data(), r, c, {}, 5, 1e-7, bf16, scratch);
            double ss = 0.0;
            bool finite = true;
            for (float x : out) {
                finite = finite && std::isfinite(x);
                ss += static_cast<double>(x) * x;
            }
            EXPECT_TRUE(finite) << "bf16 " << bf16 << " " << r << "x" << c;
            EXPECT_GT(ss / B, 0.3) << "bf16 " << bf16;  // Σσ² / rank: singular values near 1
            EXPECT_LT(ss / B, 1.7) << "bf16 " << bf16;
        }
    }
    // The whole Muon step with such a gradient.
    Params p({{"w", "ffn", {A, B}}});
    p.grads = G;
    auto opt = make_optimizer(spec_of("Muon", {{"ns_precision", std::string("bf16")}}), p.views());
    opt->step(1.0);
    for (float x : p.values) ASSERT_TRUE(std::isfinite(x));
}

// ---- Mano -------------------------------------------------------------------------------------

// A double-precision transcription of the reference's step for one matrix.
void mano_reference_step(std::vector<double>& W, const std::vector<double>& G,
                         std::vector<double>& buf, int R, int C, long t, bool v2, bool nesterov,
                         double lr, double wd, double momentum, double eps) {
    const int axis = static_cast<int>(t % 2);
    const int n_slices = axis == 0 ? C : R, len = axis == 0 ? R : C;
    auto at = [&](int s, int e) { return axis == 0 ? e * C + s : s * C + e; };
    std::vector<double> m(W.size());
    for (std::size_t i = 0; i < W.size(); ++i) {
        buf[i] = momentum * buf[i] + G[i];
        m[i] = nesterov ? G[i] + momentum * buf[i] : buf[i];
    }
    std::vector<double> U(W.size());
    for (int s = 0; s < n_slices; ++s) {
        double wn = 0.0;
        for (int e = 0; e < len; ++e) wn += W[at(s, e)] * W[at(s, e)];
        wn = std::sqrt(wn);
        const double d = v2 ? 1.0 : std::max(wn, eps);
        double dot = 0.0;
        for (int e = 0; e < len; ++e) dot += m[at(s, e)] * W[at(s, e)] / d;
        double tn = 0.0;
        for (int e = 0; e < len; ++e) {
            const double tv = m[at(s, e)] - dot * W[at(s, e)] / d;
            U[at(s, e)] = tv;
            tn += tv * tv;
        }
        tn = std::sqrt(tn);
        const double div = v2 ? tn + eps : std::max(tn, eps);
        for (int e = 0; e < len; ++e) U[at(s, e)] /= div;
    }
    const double adj = lr * 0.2 * std::sqrt(static_cast<double>(len));
    for (std::size_t i = 0; i < W.size(); ++i) W[i] = W[i] * (1.0 - lr * wd) - adj * U[i];
}

TEST(Mano, MatchesTheReferenceFormulaForBothVersions) {
    // Odd sizes exercise vector tails; 1100 x 1000 (13 MB of W, g and buf) takes the blocked
    // column path instead of the whole-matrix one.
    for (auto [R, C, steps] : {std::tuple{37, 50, 4L}, std::tuple{1100, 1000, 2L}})
        for (bool v2 : {false, true})
            for (bool nesterov : {false, true}) {
                if (R > 100 && nesterov) continue;  // the large case once per version
                SCOPED_TRACE(std::to_string(R) + "x" + std::to_string(C) + (v2 ? " v2" : " v1") +
                             (nesterov ? " nesterov" : ""));
                Params p({{"w", "ffn", {R, C}}});
                std::vector<double> W(p.values.begin(), p.values.end()), buf(W.size(), 0.0);
                auto opt = make_optimizer(
                    spec_of("Mano", {{"version", std::string(v2 ? "2" : "1")},
                                     {"nesterov", std::string(nesterov ? "true" : "false")},
                                     {"lr", 0.05}}),
                    p.views());
                for (long t = 0; t < steps; ++t) {
                    p.fill_grads(t + 1);
                    std::vector<double> G(p.grads.begin(), p.grads.end());
                    opt->step(1.0);
                    mano_reference_step(W, G, buf, R, C, t, v2, nesterov, 0.05, 0.1, 0.95, 1e-8);
                }
                double worst = 0.0;
                for (std::size_t i = 0; i < W.size(); ++i)
                    worst = std::max(worst, std::abs(W[i] - p.values[i]));
                EXPECT_LT(worst, 2e-6);
            }
}

TEST(Mano, MomentumParallelToTheWeightsGivesAFiniteBoundedStep) {
    // T = m − ⟨m, Ŵ⟩Ŵ cancels to rounding noise; the norm then comes from an explicit sweep.
    for (bool v2 : {false, true}) {
        Params p({{"w", "ffn", {16, 24}}});
        for (auto& v : p.values) v = 0.25f;  // unit-norm rows and columns are not needed
        p.grads = p.values;
        const std::vector<float> before = p.values;
        auto opt = make_optimizer(
            spec_of("Mano", {{"version", std::string(v2 ? "2" : "1")}, {"weight_decay", 0.0}}),
            p.views());
        opt->step(1.0);
        for (std::size_t i = 0; i < before.size(); ++i) {
            ASSERT_TRUE(std::isfinite(p.values[i]));
            EXPECT_LE(std::abs(p.values[i] - before[i]), 1e-3 * 0.2 * std::sqrt(16.0) + 1e-9);
        }
    }
}

TEST(Mano, UpdateHasRms02LrUnitSlicesOrthogonalToWeightsAlternatingAxes) {
    const int R = 24, C = 40;
    const double lr = 0.5;  // large, so float rounding of W is small next to the update
    Params p({{"w", "attention", {R, C}}});
    auto opt = make_optimizer(spec_of("Mano", {{"lr", lr}, {"weight_decay", 0.0}}), p.views());
    for (long t = 0; t < 4; ++t) {
        const std::vector<float> before = p.values;
        p.fill_grads(t + 1);
        opt->step(1.0);
        const int axis = static_cast<int>(t % 2);
        const int len = axis == 0 ? R : C, n_slices = axis == 0 ? C : R;
        const double adj = lr * 0.2 * std::sqrt(static_cast<double>(len));
        std::vector<double> u(before.size());
        double ss = 0.0;
        for (std::size_t i = 0; i < u.size(); ++i) {
            const double d = static_cast<double>(p.values[i]) - before[i];
            ss += d * d;
            u[i] = -d / adj;
        }
        EXPECT_NEAR(std::sqrt(ss / u.size()), 0.2 * lr, 1e-5 * lr) << "step " << t;
        for (int s = 0; s < n_slices; ++s) {
            double un = 0.0, dot = 0.0, wn = 0.0;
            for (int e = 0; e < len; ++e) {
                const std::size_t i = axis == 0 ? static_cast<std::size_t>(e) * C + s
                                                : static_cast<std::size_t>(s) * C + e;
                un += u[i] * u[i];
                dot += u[i] * before[i];
                wn += static_cast<double>(before[i]) * before[i];
            }
            EXPECT_NEAR(un, 1.0, 2e-4) << "step " << t << " slice " << s;
            EXPECT_NEAR(dot / std::sqrt(wn), 0.0, 2e-4) << "step " << t << " slice " << s;
        }
    }
}

TEST(Mano, BitIdenticalAcrossThreadCounts) {
    ThreadCountGuard guard;
    std::vector<float> results[2];
    for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        // The last matrix is large enough for the blocked column path.
        Params p(
            {{"a", "ffn", {300, 200}}, {"b", "attention", {64, 700}}, {"c", "ffn", {1100, 1000}}});
        auto opt = make_optimizer(spec_of("Mano"), p.views());
        for (long s = 1; s <= 3; ++s) {
            p.fill_grads(s);
            opt->step(1.0);
        }
        results[threads - 1] = p.values;
    }
    EXPECT_TRUE(bit_equal(results[0], results[1]));
}

// ---- SophiaG ----------------------------------------------------------------------------------

TEST(Sophia, WithZeroHessianTheStepIsDecayThenSignOfMomentum) {
    Params p({{"w", "ffn", {6, 5}}});
    const double lr = 0.01, wd = 0.1, b1 = 0.965;
    auto opt = make_optimizer(
        spec_of("SophiaG", {{"lr", lr}, {"weight_decay", wd}, {"hessian_interval", 100.0}}),
        p.views());
    std::vector<float> m(p.values.size(), 0.0f);
    for (long s = 1; s <= 3; ++s) {
        p.fill_grads(s);
        std::vector<float> want(p.values.size());
        for (std::size_t i = 0; i < want.size(); ++i) {
            m[i] = m[i] * static_cast<float>(b1) + static_cast<float>(1.0 - b1) * p.grads[i];
            const float sign = m[i] > 0 ? 1.0f : (m[i] < 0 ? -1.0f : 0.0f);
            want[i] =
                p.values[i] * static_cast<float>(1.0 - lr * wd) + static_cast<float>(-lr) * sign;
        }
        opt->step(1.0);
        EXPECT_TRUE(bit_equal(p.values, want)) << "step " << s;
    }
    // Without a hook, the step that needs an estimate fails.
    Params q({{"w", "ffn", {2, 2}}});
    auto needs = make_optimizer(spec_of("SophiaG", {{"hessian_interval", 1.0}}), q.views());
    EXPECT_TRUE(needs->needs_hessian_hook());
    EXPECT_THROW(needs->step(1.0), Error);
}

TEST(Sophia, HookRunsEveryKStepsAndTheUnclippedStepIsMOverRhoBsH) {
    Params p({{"w", "ffn", {4, 5}}});
    const double lr = 0.01, rho = 0.04, bs = 100.0, b1 = 0.965, b2 = 0.99;
    auto opt = make_optimizer(spec_of("SophiaG", {{"lr", lr},
                                                  {"rho", rho},
                                                  {"bs", bs},
                                                  {"weight_decay", 0.0},
                                                  {"hessian_interval", 2.0}}),
                              p.views());
    std::vector<long> hook_steps;
    Optimizer* raw = opt.get();
    opt->set_hessian_hook([&] {
        hook_steps.push_back(raw->steps_taken());
        for (std::size_t i = 0; i < p.grads.size(); ++i) p.grads[i] = 3.0f + 0.1f * i;  // large
    });
    for (long s = 1; s <= 2; ++s) {
        for (auto& g : p.grads) g = 1e-3f;
        opt->step(1.0);
    }
    EXPECT_EQ(hook_steps, (std::vector<long>{2}));
    const auto h = state_values(*opt, "sophiag.w.hessian");
    for (std::size_t i = 0; i < h.size(); ++i) {
        const float gi = 3.0f + 0.1f * i;
        EXPECT_FLOAT_EQ(h[i], static_cast<float>(1.0 - b2) * gi * gi);
    }
    // A small gradient now: |m| < ρ·bs·h everywhere, so no clipping.
    const std::vector<float> before = p.values;
    const auto m_before = state_values(*opt, "sophiag.w.exp_avg");
    for (auto& g : p.grads) g = 1e-3f;
    opt->step(1.0);
    for (std::size_t i = 0; i < before.size(); ++i) {
        const double m = b1 * m_before[i] + (1.0 - b1) * 1e-3;
        ASSERT_LT(std::abs(m), rho * bs * h[i]);
        const double want = before[i] - lr * m / (rho * bs * h[i]);
        EXPECT_NEAR(p.values[i], want, 1e-7) << i;
        EXPECT_NE(p.values[i], before[i] - static_cast<float>(lr));  // not a sign step
    }
    opt->step(1.0);
    EXPECT_EQ(hook_steps, (std::vector<long>{2, 4}));
    EXPECT_EQ(opt->last_timing().hook_s >= 0.0, true);
}

// ---- SPAM -------------------------------------------------------------------------------------

TEST(Spam, WarmupScaleFollowsTheReferenceCosine) {
    EXPECT_NEAR(spam_warmup_scale(0, 150), 0.01, 1e-15);
    EXPECT_EQ(spam_warmup_scale(150, 150), 1.0);
    EXPECT_EQ(spam_warmup_scale(151, 150), 1.0);
    EXPECT_NEAR(spam_warmup_scale(75, 150),
                1.0 - 0.99 * (1.0 + std::cos(std::acos(-1.0) * 75.0 / 151.0)) / 2.0, 1e-15);
    for (long c = 1; c < 150; ++c)
        EXPECT_GT(spam_warmup_scale(c, 150), spam_warmup_scale(c - 1, 150));
}

TEST(Spam, MomentsAreZeroedAtMultiplesOfDeltaTAndTheStepWarmsUp) {
    Params p({{"w", "ffn", {3, 4}}});
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-6;
    const long dt = 5, n = 3;
    auto opt = make_optimizer(spec_of("SPAM", {{"lr", lr},
                                               {"delta_t", static_cast<double>(dt)},
                                               {"warmup_steps", static_cast<double>(n)},
                                               {"threshold", 0.0}}),
                              p.views());
    for (long s = 1; s <= 12; ++s) {
        p.fill_grads(s);
        const std::vector<float> before = p.values, g = p.grads;
        const auto m_prev = state_values(*opt, "spam.w.exp_avg");
        opt->step(1.0);
        const auto m = state_values(*opt, "spam.w.exp_avg");
        const auto v = state_values(*opt, "spam.w.exp_avg_sq");
        if (s % dt == 0) {
            for (std::size_t i = 0; i < g.size(); ++i) {
                EXPECT_EQ(m[i], static_cast<float>(1.0 - b1) * g[i]) << "step " << s;
                EXPECT_EQ(v[i], static_cast<float>(1.0 - b2) * g[i] * g[i]) << "step " << s;
            }
        } else {
            for (std::size_t i = 0; i < g.size(); ++i)
                EXPECT_NEAR(m[i], b1 * m_prev[i] + (1.0 - b1) * g[i], 1e-7);
        }
        // The update's size: warm-up scale c steps after the reset (c = s mod ΔT), bias
        // corrections counted from the start.
        const long c = s >= dt ? s % dt : n + 1 + s - 1;
        const double scale = spam_warmup_scale(c, n);
        const double bc1 = 1.0 - std::pow(b1, s), bc2 = 1.0 - std::pow(b2, s);
        for (std::size_t i = 0; i < g.size(); ++i) {
            const double want = before[i] - lr * scale * std::sqrt(bc2) / bc1 * m[i] /
                                                (std::sqrt(static_cast<double>(v[i])) + eps);
            EXPECT_NEAR(p.values[i], want, 2e-6) << "step " << s;
        }
    }
}

TEST(Spam, ClipsAThousandfoldSpikeToSignTimesSqrtThetaV) {
    Params p({{"w", "ffn", {2, 3}}});
    const double theta = 5000.0, b1 = 0.9, b2 = 0.999;
    auto opt =
        make_optimizer(spec_of("SPAM", {{"delta_t", 500.0}, {"grad_accu_steps", 20.0}}), p.views());
    const std::vector<float> g0 = {0.01f, -0.02f, 0.015f, -0.01f, 0.03f, 0.005f};
    for (long s = 1; s <= 30; ++s) {
        p.grads = g0;
        opt->step(1.0);
    }
    const auto m_prev = state_values(*opt, "spam.w.exp_avg");
    const auto v_prev = state_values(*opt, "spam.w.exp_avg_sq");
    for (std::size_t i = 0; i < g0.size(); ++i) p.grads[i] = 1000.0f * g0[i];
    opt->step(1.0);
    const auto m = state_values(*opt, "spam.w.exp_avg");
    const auto v = state_values(*opt, "spam.w.exp_avg_sq");
    for (std::size_t i = 0; i < g0.size(); ++i) {
        const float clipped =
            (g0[i] > 0 ? 1.0f : -1.0f) * std::sqrt(v_prev[i] * static_cast<float>(theta));
        EXPECT_LT(std::abs(clipped), 1000.0f * std::abs(g0[i]));
        EXPECT_FLOAT_EQ(
            m[i], m_prev[i] * static_cast<float>(b1) + static_cast<float>(1.0 - b1) * clipped);
        EXPECT_FLOAT_EQ(v[i], v_prev[i] * static_cast<float>(b2) +
                                  static_cast<float>(1.0 - b2) * clipped * clipped);
    }
    // Within the first grad_accu_steps steps nothing is clipped.
    Params q({{"w", "ffn", {1, 2}}});
    auto early = make_optimizer(spec_of("SPAM"), q.views());
    q.grads = {0.01f, 0.01f};
    early->step(1.0);
    q.grads = {10.0f, 10.0f};
    early->step(1.0);
    const auto m_early = state_values(*early, "spam.w.exp_avg");
    EXPECT_FLOAT_EQ(m_early[0], 0.9f * (0.1f * 0.01f) + 0.1f * 10.0f);
}

// ---- Lion -------------------------------------------------------------------------------------

TEST(Lion, StepUsesBeta1AndMomentumKeepsBeta2) {
    Params p({{"w", "ffn", {1, 4}}});
    const double lr = 0.001, wd = 0.5, b1 = 0.9, b2 = 0.99;
    auto opt = make_optimizer(spec_of("Lion", {{"lr", lr}, {"weight_decay", wd}}), p.views());
    p.grads = {1.0f, 1.0f, -1.0f, 0.5f};
    opt->step(1.0);  // m = (1 − β2)·g
    const std::vector<float> before = p.values;
    // β1-mix and β2-mix differ in sign for the first two entries.
    p.grads = {-0.2f, -0.05f, 2.0f, 0.5f};
    const auto m1 = state_values(*opt, "lion.w.exp_avg");
    opt->step(1.0);
    const auto m2 = state_values(*opt, "lion.w.exp_avg");
    for (std::size_t i = 0; i < 4; ++i) {
        const double u = b1 * m1[i] + (1.0 - b1) * p.grads[i];
        const double sgn = u > 0 ? 1.0 : -1.0;
        EXPECT_NEAR(p.values[i], before[i] * (1.0 - lr * wd) - lr * sgn, 1e-6) << i;
        EXPECT_NEAR(m2[i], b2 * m1[i] + (1.0 - b2) * p.grads[i], 1e-8) << i;
    }
    // Entry 0: β1 mix is negative while a β2 mix would be positive.
    EXPECT_LT(b1 * m1[0] + (1 - b1) * p.grads[0], 0.0);
    EXPECT_GT(b2 * m1[0] + (1 - b2) * p.grads[0], 0.0);
}

// ---- Schedule-Free AdamW ----------------------------------------------------------------------

TEST(ScheduleFree, XYZRelationsHoldAndEvalTrainRoundTripIsExact) {
    Params p({{"w", "ffn", {3, 5}}, {"n", "norm", {5}}});
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    auto opt = make_optimizer(spec_of("ScheduleFreeAdamW", {{"lr", lr}}), p.views());
    const std::size_t n = p.values.size();
    std::vector<double> x(p.values.begin(), p.values.end());  // x₀ = y₀ = z₀
    std::vector<double> z = x, v(n, 0.0);
    for (long k = 0; k < 6; ++k) {
        p.fill_grads(k + 1);
        const std::vector<float> g = p.grads;
        opt->step(1.0);
        // With no warm-up and r = 0 every step weighs lr², so c = 1/(k+1).
        const double c = 1.0 / static_cast<double>(k + 1);
        const double bc2 = 1.0 - std::pow(b2, k + 1);
        for (std::size_t i = 0; i < n; ++i) {
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            z[i] -= lr * g[i] / (std::sqrt(v[i] / bc2) + eps);
            x[i] = (1.0 - c) * x[i] + c * z[i];
        }
        const std::vector<float> y = p.values;
        opt->eval_mode();
        EXPECT_TRUE(opt->in_eval_mode());
        const auto zs = state_values(*opt, "schedulefree.w.z");
        for (std::size_t i = 0; i < zs.size(); ++i) {
            EXPECT_NEAR(zs[i], z[i], 1e-5) << "z, step " << k;
            EXPECT_NEAR(p.values[i], x[i], 1e-5) << "x, step " << k;
            // y = (1 − β1)·z + β1·x
            EXPECT_NEAR(y[i], (1.0 - b1) * zs[i] + b1 * p.values[i], 1e-5) << "y, step " << k;
        }
        EXPECT_THROW(opt->step(1.0), Error);  // stepping in eval mode is refused
        opt->train_mode();
        EXPECT_TRUE(bit_equal(p.values, y));
    }
}

// ---- AdEMAMix ---------------------------------------------------------------------------------

TEST(AdEMAMix, AlphaAndBeta3SchedulersFollowTheReference) {
    EXPECT_DOUBLE_EQ(ademamix_alpha(5, 8.0, 10), 4.0);
    EXPECT_DOUBLE_EQ(ademamix_alpha(10, 8.0, 10), 8.0);
    EXPECT_DOUBLE_EQ(ademamix_alpha(3, 8.0, 0), 8.0);
    auto half_life = [](double b) { return std::log(0.5) / std::log(b + 1e-8) - 1.0; };
    // Linear in half-life: halfway through, the half-life is the mean of the two ends.
    const double mid = ademamix_beta3(50, 0.9, 0.9999, 100);
    const double mean_half_life = 0.5 * (half_life(0.9) + half_life(0.9999));
    EXPECT_DOUBLE_EQ(mid, std::pow(0.5, 1.0 / (mean_half_life + 1.0)));
    EXPECT_NEAR(half_life(mid), mean_half_life, 0.5);  // the 1e-8 inside the log shifts it a bit
    EXPECT_NEAR(ademamix_beta3(0, 0.9, 0.9999, 100), 0.9, 1e-7);
    EXPECT_DOUBLE_EQ(ademamix_beta3(100, 0.9, 0.9999, 100), 0.9999);
    for (long t = 1; t < 100; ++t)
        EXPECT_GT(ademamix_beta3(t, 0.9, 0.9999, 100), ademamix_beta3(t - 1, 0.9, 0.9999, 100));
}

TEST(AdEMAMix, StepMixesFastAndSlowEmasWithScheduledCoefficients) {
    Params p({{"w", "ffn", {2, 3}}});
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, b3 = 0.9999, alpha = 5.0, wd = 0.1;
    const long T = 4;
    auto opt = make_optimizer(spec_of("AdEMAMix", {{"lr", lr},
                                                   {"alpha", alpha},
                                                   {"beta3", b3},
                                                   {"alpha_warmup", static_cast<double>(T)},
                                                   {"beta3_warmup", static_cast<double>(T)},
                                                   {"weight_decay", wd}}),
                              p.views());
    const std::size_t n = p.values.size();
    std::vector<double> m1(n, 0.0), m2(n, 0.0), v(n, 0.0);
    for (long t = 1; t <= 6; ++t) {
        p.fill_grads(t);
        const std::vector<float> before = p.values, g = p.grads;
        opt->step(1.0);
        const double a = ademamix_alpha(t, alpha, T), beta3 = ademamix_beta3(t, b1, b3, T);
        const double bc1 = 1.0 - std::pow(b1, t), bc2 = 1.0 - std::pow(b2, t);
        const auto slow = state_values(*opt, "ademamix.w.exp_avg_slow");
        for (std::size_t i = 0; i < n; ++i) {
            m1[i] = b1 * m1[i] + (1.0 - b1) * g[i];
            m2[i] = beta3 * m2[i] + (1.0 - beta3) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            const double u = (m1[i] / bc1 + a * m2[i]) / (std::sqrt(v[i]) / std::sqrt(bc2) + 1e-8);
            EXPECT_NEAR(slow[i], m2[i], 1e-7) << "step " << t;
            EXPECT_NEAR(p.values[i], before[i] - lr * (u + wd * before[i]), 1e-6) << "step " << t;
        }
    }
}

// ---- every optimizer on the bundled corpus ----------------------------------------------------

struct CorpusRun {
    ModelArgs args;
    TokenSplit split;
    int B = 4, T = 64;
    CorpusRun() {
        args.dim = 64;
        args.n_layers = 2;
        args.n_heads = 4;
        args.n_kv_heads = 2;
        args.vocab_size = ByteTokenizer::kVocabSize;
        args.multiple_of = 32;
        args.rope_theta = 10000.0;
        split = load_byte_corpus(resolve_dataset_path("tinyshakespeare"), 0.1);
    }
};

// Samples labels from the model's own softmax and backpropagates their mean cross-entropy: the
// Gauss–Newton–Bartlett gradient SophiaG's hook must produce (optimizer.h).
void gnb_hook(Transformer& model, const std::vector<int32_t>& tokens, int B, int T, long step) {
    const int V = model.args().vocab_size;
    std::vector<float> logits(static_cast<std::size_t>(B) * T * V);
    model.forward_logits(tokens.data(), B, T, logits.data());
    std::mt19937_64 rng(1234 + static_cast<uint64_t>(step));
    std::vector<int32_t> sampled(static_cast<std::size_t>(B) * T);
    for (std::size_t t = 0; t < sampled.size(); ++t) {
        const float* l = logits.data() + t * V;
        const float mx = *std::max_element(l, l + V);
        std::vector<double> p(V);
        for (int j = 0; j < V; ++j) p[j] = std::exp(static_cast<double>(l[j] - mx));
        std::discrete_distribution<int> d(p.begin(), p.end());
        sampled[t] = d(rng);
    }
    model.zero_grad();
    model.forward_backward(tokens.data(), sampled.data(), B, T, 1.0 / (B * T));
}

// Trains `steps` steps from `start` (continuing the given model and optimizer); returns losses.
std::vector<double> train_steps(CorpusRun& run, Transformer& model, Optimizer& opt,
                                WindowLoader& loader, long start, long steps,
                                std::vector<int32_t>& tokens) {
    std::vector<double> losses;
    std::vector<int32_t> targets(static_cast<std::size_t>(run.B) * run.T);
    for (long s = start; s < start + steps; ++s) {
        loader.next_batch(run.B, tokens.data(), targets.data());
        model.zero_grad();
        const double loss = model.forward_backward(tokens.data(), targets.data(), run.B, run.T,
                                                   1.0 / (run.B * run.T));
        losses.push_back(loss / (run.B * run.T));
        opt.step(std::min(1.0, static_cast<double>(s) / 5.0));  // 5-step warm-up
    }
    return losses;
}

std::vector<std::pair<std::string, OptimizerSpec>> corpus_specs() {
    return {
        {"AdamW", spec_of("AdamW", {{"lr", 3e-3}})},
        {"Muon", spec_of("Muon", {{"lr", 0.02}}, {{"lr", 3e-3}})},
        {"Mano", spec_of("Mano", {{"lr", 1e-2}}, {{"lr", 3e-3}})},
        {"SophiaG", spec_of("SophiaG", {{"lr", 2e-3}, {"bs", 256.0}, {"hessian_interval", 5.0}})},
        {"SPAM", spec_of("SPAM", {{"lr", 3e-3}, {"delta_t", 20.0}, {"warmup_steps", 5.0}})},
        {"Lion", spec_of("Lion", {{"lr", 3e-4}})},
        {"ScheduleFreeAdamW", spec_of("ScheduleFreeAdamW", {{"lr", 3e-3}, {"warmup_steps", 5.0}})},
        {"AdEMAMix",
         spec_of("AdEMAMix",
                 {{"lr", 3e-3}, {"alpha", 5.0}, {"alpha_warmup", 30.0}, {"beta3_warmup", 30.0}})},
    };
}

std::unique_ptr<Optimizer> corpus_optimizer(const OptimizerSpec& spec, Transformer& model,
                                            CorpusRun& run, std::vector<int32_t>& tokens) {
    auto opt = make_optimizer(
        spec, optim_params_from(model.param_views(), model.params().data(), model.grads().data()));
    if (opt->needs_hessian_hook()) {
        Optimizer* raw = opt.get();
        opt->set_hessian_hook([&model, &run, &tokens, raw] {
            gnb_hook(model, tokens, run.B, run.T, raw->steps_taken());
        });
    }
    return opt;
}

class OptimizersCorpus : public ::testing::TestWithParam<std::string> {};

// kSteps on the corpus from one initialisation must lower the loss; a checkpoint taken after
// kHalf (in eval mode, as the trainer writes it) restored into a fresh model and optimizer must
// continue with bit-identical losses and parameters.
TEST_P(OptimizersCorpus, LowersTheLossAndResumesBitExactly) {
    CorpusRun run;
    constexpr long kSteps = 40, kHalf = 20;
    OptimizerSpec spec;
    for (const auto& [label, s] : corpus_specs())
        if (label == GetParam()) spec = s;
    std::vector<int32_t> tokens(static_cast<std::size_t>(run.B) * run.T);
    Transformer a(run.args, run.B, run.T);
    a.init_weights("agpt", 11);
    WindowLoader la(run.split.train, run.T, 5);
    auto oa = corpus_optimizer(spec, a, run, tokens);
    auto losses = train_steps(run, a, *oa, la, 1, kHalf, tokens);

    oa->eval_mode();
    const std::vector<float> saved_params = a.params();
    SavedState saved = save_state(*oa);
    const long epoch = la.epoch(), pos = la.position();
    oa->train_mode();
    const auto rest = train_steps(run, a, *oa, la, kHalf + 1, kSteps - kHalf, tokens);
    losses.insert(losses.end(), rest.begin(), rest.end());
    double first = 0.0, last = 0.0;
    for (int i = 0; i < 5; ++i) {
        first += losses[i] / 5;
        last += losses[kSteps - 5 + i] / 5;
    }
    EXPECT_LT(last, first - 1.0) << "first " << first << " last " << last;

    std::vector<int32_t> tokens_c(tokens.size());
    Transformer c(run.args, run.B, run.T);
    c.init_weights("agpt", 12);  // overwritten by the checkpoint
    c.params() = saved_params;
    WindowLoader lc(run.split.train, run.T, 5);
    lc.restore(epoch, pos);
    auto oc = corpus_optimizer(spec, c, run, tokens_c);
    oc->load_state(saved.tensors);
    oc->train_mode();
    const auto resumed = train_steps(run, c, *oc, lc, kHalf + 1, kSteps - kHalf, tokens_c);
    for (long i = 0; i < kSteps - kHalf; ++i)
        EXPECT_EQ(resumed[i], losses[kHalf + i]) << "step " << kHalf + 1 + i;
    EXPECT_TRUE(bit_equal(a.params(), c.params()));
}

INSTANTIATE_TEST_SUITE_P(Each, OptimizersCorpus,
                         ::testing::Values("AdamW", "Muon", "Mano", "SophiaG", "SPAM", "Lion",
                                           "ScheduleFreeAdamW", "AdEMAMix"));

}  // namespace
}  // namespace agpt
