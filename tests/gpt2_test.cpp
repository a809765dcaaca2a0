// GPT-2: the LayerNorm, GELU and bias kernels against finite differences in double precision,
// the Gpt2 model's layout, initialisation and invariants, and llm.c checkpoint import (round
// trip and refusal of bad headers). Logits and gradients against PyTorch: gpt2_reference.cmake.
#include <gtest/gtest.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/cpu/bias.h"
#include "kernels/cpu/gelu.h"
#include "kernels/cpu/layernorm.h"
#include "model/gpt2.h"
#include "model/gpt2_io.h"
#include "tools/llmc_import.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;
using Vec = std::vector<double>;

Vec randn(Rng& rng, std::size_t n, double std = 1.0, double mean = 0.0) {
    Vec v(n);
    for (auto& x : v) x = mean + std * rng.normal();
    return v;
}

double max_abs(const Vec& v) {
    double m = 0;
    for (double x : v) m = std::max(m, std::abs(x));
    return m;
}

// Central-difference check of a backward that accumulates d(Σ dout ⊙ out)/dparam into grads
// (as tests/kernels_test.cpp does): every element of every parameter, relative tolerance with
// a floor at 1% of the parameter's largest gradient; also checks that backward adds (+=).
void check_gradients(const std::string& what, const std::vector<std::pair<std::string, Vec*>>& ps,
                     const std::function<Vec()>& forward,
                     const std::function<void(const Vec&, std::vector<Vec>&)>& backward,
                     double rtol = 1e-6, double eps = 1e-6) {
    SCOPED_TRACE(what);
    Rng rng(7);
    const Vec dout = randn(rng, forward().size());
    auto zeros = [&] {
        std::vector<Vec> g;
        for (const auto& p : ps) g.emplace_back(p.second->size(), 0.0);
        return g;
    };
    std::vector<Vec> grads = zeros();
    backward(dout, grads);
    std::vector<Vec> pre = zeros();
    for (auto& g : pre) g = randn(rng, g.size());
    std::vector<Vec> added = pre;
    backward(dout, added);
    for (std::size_t p = 0; p < ps.size(); ++p) {
        const double scale = std::max(max_abs(grads[p]), 1.0);
        for (std::size_t k = 0; k < grads[p].size(); ++k)
            ASSERT_NEAR(added[p][k] - pre[p][k], grads[p][k], 1e-12 * scale)
                << ps[p].first << "[" << k << "]: backward overwrote its output";
    }
    for (std::size_t p = 0; p < ps.size(); ++p) {
        Vec& x = *ps[p].second;
        Vec numeric(x.size());
        for (std::size_t k = 0; k < x.size(); ++k) {
            const double v = x[k];
            x[k] = v + eps;
            const Vec plus = forward();
            x[k] = v - eps;
            const Vec minus = forward();
            x[k] = v;
            double s = 0;
            for (std::size_t i = 0; i < plus.size(); ++i) s += dout[i] * (plus[i] - minus[i]);
            numeric[k] = s / (2 * eps);
        }
        const double floor = 1e-2 * max_abs(numeric);
        int failures = 0;
        for (std::size_t k = 0; k < x.size(); ++k) {
            const double rel = std::abs(grads[p][k] - numeric[k]) /
                               std::max({std::abs(numeric[k]), floor, 1e-300});
            if (rel > rtol && ++failures <= 5)
                ADD_FAILURE() << ps[p].first << "[" << k << "]: analytic " << grads[p][k]
                              << " numeric " << numeric[k] << " (relative error " << rel << ")";
        }
        EXPECT_EQ(failures, 0) << ps[p].first;
        EXPECT_GT(max_abs(grads[p]), 0.0) << ps[p].first << ": gradient identically zero";
    }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

TEST(KernelLayerNorm, ForwardMatchesDefinition) {
    const int N = 4, C = 11;
    const double eps = 1e-5;
    Rng rng(41);
    const Vec inp = randn(rng, N * C, 2.0, 0.7), w = randn(rng, C, 0.2, 1.0),
              b = randn(rng, C, 0.3);
    Vec out(N * C), mean(N), rstd(N);
    cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), N,
                           C, eps);
    for (int n = 0; n < N; ++n) {
        double m = 0, v = 0;
        for (int c = 0; c < C; ++c) m += inp[n * C + c];
        m /= C;
        for (int c = 0; c < C; ++c) v += (inp[n * C + c] - m) * (inp[n * C + c] - m);
        v /= C;
        const double r = 1.0 / std::sqrt(v + eps);
        EXPECT_NEAR(mean[n], m, 1e-14);
        EXPECT_NEAR(rstd[n], r, 1e-13 * r);
        for (int c = 0; c < C; ++c)
            EXPECT_NEAR(out[n * C + c], (inp[n * C + c] - m) * r * w[c] + b[c], 1e-13);
    }
}

TEST(KernelLayerNorm, Gradient) {
    // One thread: ~2000 forwards of a few rows each, where a busy machine makes every parallel
    // region's barrier cost milliseconds (thread independence is checked below).
    const int before = omp_get_max_threads();
    omp_set_num_threads(1);
    // 150 rows: more than two of the 64-row reduction blocks, the last one ragged.
    for (const auto& [N, C] : {std::pair{5, 9}, std::pair{150, 6}}) {
        Rng rng(42 + N);
        Vec inp = randn(rng, N * C, 1.5, 0.3), w = randn(rng, C, 0.3, 1.0), b = randn(rng, C, 0.3),
            mean(N), rstd(N);
        auto forward = [&] {
            Vec out(N * C);
            cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(),
                                   b.data(), N, C, 1e-5);
            return out;
        };
        auto backward = [&](const Vec& dout, std::vector<Vec>& g) {
            forward();
            cpu::layernorm_backward(g[0].data(), g[1].data(), g[2].data(), dout.data(), inp.data(),
                                    w.data(), mean.data(), rstd.data(), N, C);
        };
        check_gradients("layernorm N=" + std::to_string(N),
                        {{"inp", &inp}, {"weight", &w}, {"bias", &b}}, forward, backward);
    }
    omp_set_num_threads(before);
}

TEST(KernelLayerNorm, WeightGradientIndependentOfThreads) {
    const int N = 300, C = 40;
    Rng rng(43);
    std::vector<float> inp(N * C), w(C, 1.1f), b(C, 0.1f), dout(N * C), out(N * C), mean(N),
        rstd(N);
    for (auto& x : inp) x = static_cast<float>(rng.normal());
    for (auto& x : dout) x = static_cast<float>(rng.normal());
    cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), inp.data(), w.data(), b.data(), N,
                           C, 1e-5f);
    auto run = [&](int threads) {
        omp_set_num_threads(threads);
        std::vector<float> dinp(N * C, 0.0f), dw(C, 0.0f), db(C, 0.0f);
        cpu::layernorm_backward(dinp.data(), dw.data(), db.data(), dout.data(), inp.data(),
                                w.data(), mean.data(), rstd.data(), N, C);
        dw.insert(dw.end(), db.begin(), db.end());
        return dw;
    };
    const int before = omp_get_max_threads();
    const auto one = run(1), two = run(2), three = run(3);
    omp_set_num_threads(before);
    EXPECT_EQ(one, two);
    EXPECT_EQ(one, three);
}

// ---------------------------------------------------------------------------------------------
// GELU (tanh approximation)

TEST(KernelGelu, ForwardMatchesDefinition) {
    Vec inp;
    for (double x = -12; x <= 12; x += 0.173) inp.push_back(x);
    inp.push_back(0.0);
    inp.push_back(1e-9);
    inp.push_back(-50.0);
    inp.push_back(50.0);
    Vec out(inp.size());
    cpu::gelu_forward(out.data(), inp.data(), static_cast<long>(inp.size()));
    std::vector<float> inpf(inp.begin(), inp.end()), outf(inp.size());
    cpu::gelu_forward(outf.data(), inpf.data(), static_cast<long>(inp.size()));
    for (std::size_t i = 0; i < inp.size(); ++i) {
        const double x = inp[i];
        const double want =
            0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
        EXPECT_NEAR(out[i], want, 1e-15 * std::max(1.0, std::abs(x))) << "x=" << x;
        EXPECT_NEAR(outf[i], want, 1e-6 * std::max(1.0, std::abs(x))) << "float, x=" << x;
    }
}

TEST(KernelGelu, Gradient) {
    Rng rng(44);
    Vec inp = randn(rng, 200, 2.5);
    inp[0] = 0.0;
    inp[1] = 6.0;  // the tails, where tanh saturates
    inp[2] = -6.0;
    auto forward = [&] {
        Vec out(inp.size());
        cpu::gelu_forward(out.data(), inp.data(), static_cast<long>(inp.size()));
        return out;
    };
    auto backward = [&](const Vec& dout, std::vector<Vec>& g) {
        cpu::gelu_backward(g[0].data(), dout.data(), inp.data(), static_cast<long>(inp.size()));
    };
    check_gradients("gelu", {{"inp", &inp}}, forward, backward);
}

// ---------------------------------------------------------------------------------------------
// Bias (row broadcast) and its gradient

TEST(KernelBias, ForwardAndGradient) {
    const int N = 7, OC = 150;  // OC spans three 64-column slices, the last ragged
    Rng rng(45);
    Vec base = randn(rng, N * OC), bias = randn(rng, OC);
    Vec set(N * OC, 9.0);
    cpu::bias_forward(set.data(), bias.data(), N, OC, false);
    for (int i = 0; i < N; ++i)
        for (int j = 0; j < OC; ++j) EXPECT_EQ(set[i * OC + j], bias[j]);
    auto forward = [&] {
        Vec out = base;
        cpu::bias_forward(out.data(), bias.data(), N, OC);
        return out;
    };
    auto backward = [&](const Vec& dout, std::vector<Vec>& g) {
        cpu::bias_backward(g[0].data(), dout.data(), N, OC);
    };
    check_gradients("bias", {{"bias", &bias}}, forward, backward);
}

// ---------------------------------------------------------------------------------------------
// The model

TEST(Gpt2Model, FlavorsAndParameterCounts) {
    const Gpt2Flavor* f = find_gpt2_flavor("124M");
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->args.padded_vocab(), 50304);
    // llm.c's count for gpt2_124M.bin (padded wte); Hugging Face's 124439808 + 47·768.
    EXPECT_EQ(f->args.num_params(), 124475904);
    EXPECT_EQ(find_gpt2_flavor("350M")->args.num_params() - 47L * 1024, 354823168);
    EXPECT_EQ(find_gpt2_flavor("774M")->args.num_params() - 47L * 1280, 774030080);
    EXPECT_EQ(find_gpt2_flavor("1558M")->args.num_params() - 47L * 1600, 1557611200);
    const Gpt2Flavor* tiny = find_gpt2_flavor("gpt2_tiny");
    ASSERT_NE(tiny, nullptr);
    EXPECT_EQ(tiny->args.n_layers, 2);
    EXPECT_EQ(tiny->args.dim, 64);
    EXPECT_EQ(tiny->args.n_heads, 4);
    EXPECT_EQ(tiny->args.vocab_size, 512);
    EXPECT_EQ(tiny->args.max_seq_len, 128);
    EXPECT_EQ(find_gpt2_flavor("nope"), nullptr);

    const auto views = gpt2_param_views(f->args);
    EXPECT_EQ(views.back().offset + views.back().numel(),
              static_cast<std::size_t>(f->args.num_params()));
    EXPECT_EQ(views.size(), 2u + 12u * 12u + 2u);
    for (const auto& v : views) {
        EXPECT_EQ(v.name.find("lm_head"), std::string::npos) << "the head is tied to wte";
        if (v.name.ends_with(".bias")) {
            EXPECT_EQ(v.role, "bias") << v.name;
        }
    }
    EXPECT_EQ(views[0].name, "wte.weight");
    EXPECT_EQ(views[0].shape, (std::vector<int>{50304, 768}));
    EXPECT_EQ(views[1].name, "wpe.weight");
    EXPECT_EQ(views[1].shape, (std::vector<int>{1024, 768}));
    EXPECT_EQ(views[2].name, "h.0.ln_1.weight");
    EXPECT_EQ(views[2].role, "norm");
    EXPECT_EQ(views[4].name, "h.0.attn.c_attn.weight");
    EXPECT_EQ(views[4].shape, (std::vector<int>{2304, 768}));
    EXPECT_EQ(views[4].role, "attention");
    EXPECT_EQ(views[10].name, "h.0.mlp.c_fc.weight");
    EXPECT_EQ(views[10].shape, (std::vector<int>{3072, 768}));
    EXPECT_EQ(views[10].role, "ffn");
    EXPECT_EQ(views.back().name, "ln_f.bias");
}

Gpt2Args small_args() {
    Gpt2Args a = find_gpt2_flavor("gpt2_tiny")->args;
    a.vocab_size = 300;  // padded to 384
    a.max_seq_len = 40;
    return a;
}

TEST(Gpt2Model, InitialisationFollowsGpt2) {
    Gpt2Args a = find_gpt2_flavor("gpt2_tiny")->args;
    a.n_layers = 8;  // c_proj std 0.02/4 = 0.005
    a.dim = 128;
    a.vocab_size = 1000;
    Gpt2 m(a, 1, 4);
    m.init_weights("gpt2", 3);
    auto stats = [&](const std::string& name, std::size_t rows = 0) {
        const ParamView& v = m.view(name);
        const std::size_t n = rows ? rows * v.shape[1] : v.numel();
        const float* p = m.param(name);
        double s = 0, ss = 0;
        for (std::size_t i = 0; i < n; i++) s += p[i], ss += p[i] * double(p[i]);
        return std::pair{s / n, std::sqrt(ss / n - (s / n) * (s / n))};
    };
    EXPECT_NEAR(stats("wte.weight", 1000).second, 0.02, 0.001);
    EXPECT_NEAR(stats("wpe.weight").second, 0.02, 0.002);
    EXPECT_NEAR(stats("h.3.attn.c_attn.weight").second, 0.02, 0.0005);
    EXPECT_NEAR(stats("h.3.mlp.c_fc.weight").second, 0.02, 0.0005);
    EXPECT_NEAR(stats("h.3.attn.c_proj.weight").second, 0.005, 0.0002);
    EXPECT_NEAR(stats("h.7.mlp.c_proj.weight").second, 0.005, 0.0002);
    const float* wte = m.param("wte.weight");
    for (std::size_t i = 1000 * 128; i < 1024 * 128; i++) ASSERT_EQ(wte[i], 0.0f) << "padding";
    for (const auto& v : m.param_views()) {
        const float* p = m.params().data() + v.offset;
        const float want = v.role == "norm" ? 1.0f : 0.0f;
        if (v.role == "bias" || v.role == "norm") {
            for (std::size_t i = 0; i < v.numel(); i++) ASSERT_EQ(p[i], want) << v.name;
        }
    }
    EXPECT_THROW(m.init_weights("agpt", 3), Error);
}

std::vector<int32_t> random_ids(Rng& rng, int n, int V) {
    std::vector<int32_t> v(n);
    for (auto& x : v) x = static_cast<int32_t>(rng.below(V));
    return v;
}

TEST(Gpt2Model, LossGradientsAndDeterminism) {
    const Gpt2Args a = small_args();
    const int B = 3, T = 37;
    Gpt2 m(a, B, T);
    m.init_weights("gpt2", 5);
    Rng rng(6);
    for (float& p : m.params()) p += static_cast<float>(0.05 * rng.normal());
    const auto tokens = random_ids(rng, B * T, a.vocab_size);
    auto targets = random_ids(rng, B * T, a.vocab_size);
    targets[4] = -1;
    // Near-uniform predictions at small weights: loss ≈ ln V.
    const double loss = m.forward_loss(tokens.data(), targets.data(), B, T) / (B * T - 1);
    EXPECT_NEAR(loss, std::log(300.0), 0.5);

    auto run = [&](int threads) {
        omp_set_num_threads(threads);
        m.zero_grad();
        const double l = m.forward_backward(tokens.data(), targets.data(), B, T, 1.0 / (B * T));
        return std::pair{l, m.grads()};
    };
    // Same thread count: bit-identical (fixed reduction orders); another count: close.
    const int before = omp_get_max_threads();
    const auto [l1, g1] = run(2);
    const auto [l2, g2] = run(2);
    const auto [l3, g3] = run(1);
    omp_set_num_threads(before);
    EXPECT_EQ(l1, l2);
    EXPECT_EQ(g1, g2) << "gradients differ between two identical runs";
    EXPECT_NEAR(l3, l1, 1e-9 * std::abs(l1));
    float gmax = 0;
    for (float g : g1) gmax = std::max(gmax, std::abs(g));
    for (std::size_t i = 0; i < g1.size(); i++) ASSERT_NEAR(g3[i], g1[i], 1e-5f * gmax) << i;
    EXPECT_NEAR(l1 / (B * T - 1), loss, 1e-12);
    // The padding rows of wte get no gradient; every other tensor does.
    const float* gw = g1.data() + m.view("wte.weight").offset;
    for (std::size_t i = 300 * 64; i < 384 * 64; i++) ASSERT_EQ(gw[i], 0.0f);
    for (const auto& v : m.param_views()) {
        double s = 0;
        for (std::size_t i = 0; i < v.numel(); i++) s += std::abs(g1[v.offset + i]);
        EXPECT_GT(s, 0.0) << v.name;
    }
    // Gradients accumulate across calls until zero_grad.
    m.forward_backward(tokens.data(), targets.data(), B, T, 1.0 / (B * T));
    for (std::size_t i = 0; i < g1.size(); i += 97)
        ASSERT_NEAR(m.grads()[i], 2 * g1[i], 1e-6f * (1 + std::abs(g1[i])));

    // Logits: last_logits equals forward_logits' last row; the loss is their cross-entropy.
    std::vector<float> logits(static_cast<std::size_t>(B) * T * a.vocab_size), last(a.vocab_size);
    m.forward_logits(tokens.data(), B, T, logits.data());
    m.last_logits(tokens.data(), T, last.data());
    for (int v = 0; v < a.vocab_size; v++)
        ASSERT_NEAR(last[v], logits[static_cast<std::size_t>(T - 1) * a.vocab_size + v], 1e-5f);
    double ce = 0;
    for (int i = 0; i < B * T; i++) {
        if (targets[i] < 0) continue;
        const float* row = logits.data() + static_cast<std::size_t>(i) * a.vocab_size;
        const double mx = *std::max_element(row, row + a.vocab_size);
        double z = 0;
        for (int v = 0; v < a.vocab_size; v++) z += std::exp(row[v] - mx);
        ce += std::log(z) + mx - row[targets[i]];
    }
    EXPECT_NEAR(ce / (B * T - 1), loss, 1e-5);
}

TEST(Gpt2Model, RefusesBadShapesAndIds) {
    const Gpt2Args a = small_args();
    EXPECT_THROW(Gpt2(a, 1, 41), Error);  // longer than wpe
    Gpt2Args odd = a;
    odd.n_heads = 5;
    EXPECT_THROW(Gpt2(odd, 1, 4), Error);
    Gpt2 m(a, 2, 8);
    std::vector<int32_t> tokens(16, 1), targets(16, 1);
    EXPECT_THROW(m.forward_loss(tokens.data(), targets.data(), 2, 9), Error);
    tokens[3] = 300;
    EXPECT_THROW(m.forward_loss(tokens.data(), targets.data(), 2, 8), Error);
    tokens[3] = 1;
    targets[5] = 300;
    EXPECT_THROW(m.forward_loss(tokens.data(), targets.data(), 2, 8), Error);
}

// ---------------------------------------------------------------------------------------------
// llm.c checkpoints

struct TempDir {
    fs::path path;
    TempDir() {
        path = fs::temp_directory_path() /
               ("agpt_gpt2_test_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
};

TEST(LlmcImport, RoundTripIsBitExact) {
    TempDir dir;
    const Gpt2Args a = small_args();
    Gpt2 m(a, 2, 16);
    m.init_weights("gpt2", 11);
    Rng rng(12);
    for (float& p : m.params()) p += static_cast<float>(0.1 * rng.normal());
    const std::string bin = (dir.path / "model.bin").string();
    write_llmc_checkpoint(a, m.params().data(), bin);
    EXPECT_EQ(fs::file_size(bin), 1024 + 4 * static_cast<std::uintmax_t>(a.num_params()));

    const Gpt2Args h = read_llmc_header(bin);
    EXPECT_EQ(h.dim, a.dim);
    EXPECT_EQ(h.n_layers, a.n_layers);
    EXPECT_EQ(h.n_heads, a.n_heads);
    EXPECT_EQ(h.vocab_size, 300);
    EXPECT_EQ(h.padded_vocab(), 384);
    EXPECT_EQ(h.max_seq_len, 40);

    const std::string out = (dir.path / "imported").string();
    const LlmcImportResult r = import_llmc(bin, out);
    EXPECT_EQ(r.flavor, "gpt2_tiny");
    EXPECT_EQ(r.params, a.num_params());
    EXPECT_TRUE(fs::exists(dir.path / "imported" / "manifest.json"));
    EXPECT_FALSE(fs::exists(dir.path / "imported.tmp"));
    EXPECT_THROW(import_llmc(bin, out), Error);  // never overwrites

    auto loaded = load_gpt2_model_folder(out, 2, 16);
    EXPECT_EQ(loaded->params(), m.params());
    const auto tokens = random_ids(rng, 32, a.vocab_size);
    std::vector<float> l1(32 * 300), l2(32 * 300);
    m.forward_logits(tokens.data(), 2, 16, l1.data());
    loaded->forward_logits(tokens.data(), 2, 16, l2.data());
    EXPECT_EQ(l1, l2);

    // Out again: byte-identical to the file imported.
    const std::string bin2 = (dir.path / "again.bin").string();
    write_llmc_checkpoint(loaded->args(), loaded->params().data(), bin2);
    std::ifstream f1(bin, std::ios::binary), f2(bin2, std::ios::binary);
    const std::string b1((std::istreambuf_iterator<char>(f1)), {}),
        b2((std::istreambuf_iterator<char>(f2)), {});
    EXPECT_TRUE(b1 == b2);
}

// Writes a valid llm.c file for small_args(), then lets `edit` damage it.
std::string write_damaged(const fs::path& dir, const std::string& name,
                          const std::function<void(std::vector<int32_t>&)>& edit) {
    const Gpt2Args a = small_args();
    std::vector<float> params(static_cast<std::size_t>(a.num_params()), 0.5f);
    const std::string path = (dir / name).string();
    write_llmc_checkpoint(a, params.data(), path);
    std::ifstream in(path, std::ios::binary);
    std::vector<int32_t> words((fs::file_size(path) + 3) / 4);
    in.read(reinterpret_cast<char*>(words.data()),
            static_cast<std::streamsize>(fs::file_size(path)));
    in.close();
    edit(words);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(words.data()),
              static_cast<std::streamsize>(words.size() * 4));
    return path;
}

void expect_refused(const std::string& path, const fs::path& out_dir, const std::string& what) {
    SCOPED_TRACE(what);
    try {
        import_llmc(path, out_dir.string());
        ADD_FAILURE() << "accepted a checkpoint with " << what;
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(path), std::string::npos) << "error does not name the file: " << msg;
        EXPECT_NE(msg.find(what), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    }
    EXPECT_FALSE(fs::exists(out_dir));
    EXPECT_FALSE(fs::exists(out_dir.string() + ".tmp"));
}

TEST(LlmcImport, RefusesBadHeaders) {
    TempDir dir;
    const fs::path out = dir.path / "out";
    expect_refused(write_damaged(dir.path, "magic.bin", [](auto& w) { w[0] = 20240520; }), out,
                   "magic 20240520");
    expect_refused(write_damaged(dir.path, "v5.bin", [](auto& w) { w[1] = 5; }), out,
                   "version 5 is not supported");
    expect_refused(write_damaged(dir.path, "v1.bin", [](auto& w) { w[1] = 1; }), out,
                   "version 1 is not supported");
    expect_refused(write_damaged(dir.path, "short.bin", [](auto& w) { w.pop_back(); }), out,
                   "truncated");
    expect_refused(write_damaged(dir.path, "long.bin", [](auto& w) { w.push_back(0); }), out,
                   "too long");
    expect_refused(write_damaged(dir.path, "layers.bin", [](auto& w) { w[4] = 3; }), out,
                   "num_layers 3");
    expect_refused(write_damaged(dir.path, "heads.bin", [](auto& w) { w[5] = 7; }), out,
                   "not divisible by num_heads 7");
    expect_refused(write_damaged(dir.path, "vp.bin", [](auto& w) { w[7] = 200; }), out,
                   "smaller than vocab_size");
    expect_refused(write_damaged(dir.path, "neg.bin", [](auto& w) { w[6] = -64; }), out,
                   "implausible");
    expect_refused(write_damaged(dir.path, "header.bin", [](auto& w) { w.resize(100); }), out,
                   "truncated llm.c checkpoint (400 bytes");
    expect_refused((dir.path / "missing.bin").string(), out, "no such file");
}

TEST(Gpt2Io, RefusesMismatchedWeights) {
    TempDir dir;
    const Gpt2Args a = small_args();
    Gpt2 m(a, 1, 4);
    const std::string path = (dir.path / "w.safetensors").string();
    write_gpt2_safetensors(m.param_views(), m.params().data(), a, path);
    const SafetensorsFile f(path);
    const Gpt2Args back = gpt2_args_from_metadata(f);
    EXPECT_EQ(back.dim, a.dim);
    EXPECT_EQ(back.padded_vocab(), a.padded_vocab());
    Gpt2Args other = a;
    other.max_seq_len = 41;
    Gpt2 wrong(other, 1, 4);
    try {
        read_gpt2_weights(f, wrong);
        ADD_FAILURE() << "loaded weights of another shape";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("wpe.weight"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace agpt
