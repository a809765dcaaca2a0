// Per-step cost of every optimizer on ~29M parameters shaped like a transformer (dim 512, 6
// layers, SwiGLU hidden 1536, vocabulary 8192: 20.4M in hidden matrices, 8.4M in the embedding
// and the LM head, norms), as a ratio to AdamW, with AdamW's effective memory bandwidth next to a
// STREAM-style triad measured in the same process.
//
// Built by bench/CMakeLists.txt (target optimizer_bench), or by hand:
//   g++ -std=c++20 -O3 -DNDEBUG -march=native -fno-math-errno -fopenmp -Isrc
//       -I/usr/include/x86_64-linux-gnu/openblas-openmp bench/optimizer_bench.cpp
//       src/optim/*.cpp src/kernels/cpu/adamw.cpp src/kernels/cpu/gemm.cpp
//       src/kernels/cpu/newton_schulz.cpp src/core/safetensors.cpp
//       -L/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas -lfmt -o /tmp/optimizer_bench
//   OMP_NUM_THREADS=2 /tmp/optimizer_bench [steps] [labels, comma-separated]
// Each optimizer runs 2 untimed steps, then `steps` timed pairs of steps (default 5); the
// median over pairs of the mean update time (OptimStepTiming::update_s, which leaves SophiaG's
// model-side hook out) is reported. AdamW runs first and last; the faster is the baseline.
// Gradients are fixed random values: the cost of an update does not depend on them.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "optim/optimizer.h"

namespace {

using agpt::HyperValue;
using agpt::OptimParam;

struct Shape {
    std::string name, role;
    std::vector<int> shape;
};

std::vector<Shape> transformer_shapes(int dim, int layers, int ffn, int vocab) {
    std::vector<Shape> s;
    s.push_back({"tok_embeddings.weight", "embedding", {vocab, dim}});
    for (int l = 0; l < layers; ++l) {
        const std::string p = "layers." + std::to_string(l) + ".";
        s.push_back({p + "attention_norm.weight", "norm", {dim}});
        for (const char* w : {"wq", "wk", "wv", "wo"})
            s.push_back({p + "attention." + w + ".weight", "attention", {dim, dim}});
        s.push_back({p + "ffn_norm.weight", "norm", {dim}});
        s.push_back({p + "feed_forward.w1.weight", "ffn", {ffn, dim}});
        s.push_back({p + "feed_forward.w3.weight", "ffn", {ffn, dim}});
        s.push_back({p + "feed_forward.w2.weight", "ffn", {dim, ffn}});
    }
    s.push_back({"norm.weight", "norm", {dim}});
    s.push_back({"output.weight", "head", {vocab, dim}});
    return s;
}

double now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// a = b + s·c over arrays of n floats: 12 bytes moved per element (two reads, one write).
double triad_gbps(std::size_t n) {
    std::vector<float> a(n, 0.0f), b(n, 1.0f), c(n, 2.0f);
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
        const double t0 = now();
#pragma omp parallel for schedule(static)
        for (std::size_t i = 0; i < n; ++i) a[i] = b[i] + 0.5f * c[i];
        best = std::min(best, now() - t0);
    }
    if (a[n / 2] != 2.0f) std::fprintf(stderr, "triad check failed\n");
    return 12.0 * static_cast<double>(n) / best / 1e9;
}

struct Case {
    std::string label, name;
    std::map<std::string, HyperValue> hyper;
};

}  // namespace

int main(int argc, char** argv) {
    const int steps = argc > 1 ? std::atoi(argv[1]) : 5;
    // Optional: comma-separated substrings; only matching labels (and AdamW) run.
    std::vector<std::string> only;
    if (argc > 2)
        for (std::string rest = argv[2]; !rest.empty();) {
            const auto comma = rest.find(',');
            only.push_back(rest.substr(0, comma));
            rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
        }
    auto wanted = [&](const std::string& label) {
        if (only.empty()) return true;
        for (const auto& o : only)
            if (label.find(o) != std::string::npos) return true;
        return false;
    };
    const auto shapes = transformer_shapes(512, 6, 1536, 8192);
    std::size_t n = 0, hidden = 0;
    for (const auto& s : shapes) {
        std::size_t k = 1;
        for (int d : s.shape) k *= static_cast<std::size_t>(d);
        n += k;
        if (s.shape.size() == 2 && (s.role == "attention" || s.role == "ffn")) hidden += k;
    }
    std::vector<float> values(n), grads(n);
    std::mt19937 rng(1);
    std::normal_distribution<float> d(0.0f, 0.02f);
    for (auto& v : values) v = d(rng);
    for (auto& g : grads) g = d(rng);
    const std::vector<float> initial = values;
    std::vector<OptimParam> params;
    std::size_t off = 0;
    for (const auto& s : shapes) {
        params.push_back({s.name, s.role, s.shape, values.data() + off, grads.data() + off});
        off += params.back().numel();
    }

    const double triad = triad_gbps(n);
    std::printf("parameters %zu (hidden matrices %zu), threads %d, %d timed steps\n", n, hidden,
                omp_get_max_threads(), steps);
    // A store to a line not in cache first reads it (write-allocate), so the triad really moves
    // 16 bytes per element; AdamW reads every line it writes, so its 28 bytes are all it moves.
    const double triad_wa = triad * 16.0 / 12.0;
    std::printf("triad bandwidth %.1f GB/s (%.1f GB/s counting write-allocate reads)\n\n", triad,
                triad_wa);
    std::printf("%-22s %10s %10s %10s\n", "optimizer", "ms/step", "ns/param", "vs AdamW");

    const std::vector<Case> cases = {
        {"AdamW", "AdamW", {}},
        {"Muon (fp32 NS)", "Muon", {}},
        {"Muon (bf16 NS)", "Muon", {{"ns_precision", std::string("bf16")}}},
        {"Mano v1", "Mano", {}},
        {"Mano v2", "Mano", {{"version", std::string("2")}}},
        {"SophiaG", "SophiaG", {}},
        {"SPAM", "SPAM", {}},
        {"Lion", "Lion", {}},
        {"ScheduleFreeAdamW", "ScheduleFreeAdamW", {}},
        {"AdEMAMix", "AdEMAMix", {}},
    };
    // Medians per case; AdamW runs first and again last, and the faster of its two medians is
    // the baseline, so a slow moment on a shared machine does not skew every ratio.
    auto time_case = [&](const Case& c) {
        values = initial;  // same storage: the views stay valid
        agpt::OptimizerSpec spec;
        spec.name = c.name;
        spec.hyper = c.hyper;
        auto opt = agpt::make_optimizer(spec, params);
        // SophiaG's estimate is a forward/backward of the model, not optimizer work: the hook
        // leaves the gradients as they are, and its folding into h (every 10th step) is timed.
        if (opt->needs_hessian_hook()) opt->set_hessian_hook([] {});
        for (int i = 0; i < 2; ++i) opt->step(1.0);
        // Pairs of consecutive steps: Mano alternates column and row normalisation, whose costs
        // differ, so a step's cost is half a pair's.
        std::vector<double> t;
        for (int i = 0; i < steps; ++i) {
            opt->step(1.0);
            const double a = opt->last_timing().update_s;
            opt->step(1.0);
            t.push_back(0.5 * (a + opt->last_timing().update_s));
        }
        std::sort(t.begin(), t.end());
        return t[t.size() / 2];
    };
    std::vector<std::pair<std::string, double>> results;
    for (const auto& c : cases)
        if (c.name == "AdamW" || wanted(c.label)) results.push_back({c.label, time_case(c)});
    const double adamw_s = std::min(results.front().second, time_case(cases.front()));
    results.front().second = adamw_s;
    for (const auto& [label, med] : results) {
        std::printf("%-22s %10.2f %10.3f %10.2f\n", label.c_str(), med * 1e3,
                    med * 1e9 / static_cast<double>(n), med / adamw_s);
        if (label == "AdamW") {
            // Reads p, g, m, v and writes p, m, v: 28 bytes per parameter.
            const double gbps = 28.0 * static_cast<double>(n) / med / 1e9;
            std::printf("%-22s %10.1f GB/s (%.0f%% of the triad's)\n", "  AdamW bandwidth", gbps,
                        100.0 * gbps / triad_wa);
        }
    }
    return 0;
}
