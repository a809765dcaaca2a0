// GPT-2 training step time, the shape of llm.c's CPU reference (train_gpt2.c: GPT-2 124M,
// B=4, T=64), for issue 6's comparison. Each step is timed in three parts:
//   fwd_bwd:  zero_grad + forward + fused LM-head cross-entropy + backward   (Gpt2)
//   update:   AdamW over the flat buffer (lr 1e-4, llm.c's train_gpt2.c settings)
//   step:     their sum — what llm.c's "step N: train loss ... (took X ms)" line measures
// after `--warmup` untimed steps, and prints each step and the medians (one JSON line last:
// fwd_bwd_s, update_s, step_s medians; min_step_s; cpu_s, the median process CPU seconds per
// step, which a busy machine inflates less than wall time: at one thread it approximates the
// step on an idle core). Tokens are random ids: the cost of a step does not depend on them.
//
// Built as agpt_gpt2_bench by tests/gpt2_reference.cmake; bench/gpt2_step_bench.sh runs it.
//   agpt_gpt2_bench [--flavor 124M] [--batch 4] [--seq 64] [--threads 2] [--steps 10]
//                   [--warmup 2]
#include <cblas.h>
#include <omp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/memory.h"
#include "core/rng.h"
#include "model/gpt2.h"
#include "optim/adamw.h"

namespace {

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// CPU seconds of the whole process (all threads): on a busy machine, wall time includes waiting
// for a core; CPU time does not (it does include OpenMP/OpenBLAS threads spinning at barriers).
double cpu_s() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int run(int argc, char** argv) {
    std::string flavor = "124M";
    int B = 4, T = 64, threads = 2, steps = 10, warmup = 2;
    CLI::App app{"Time GPT-2 training steps (forward, backward, AdamW)"};
    app.add_option("--flavor", flavor, "gpt2 flavor (124M, 350M, 774M, 1558M, gpt2_tiny)");
    app.add_option("--batch", B, "batch size B");
    app.add_option("--seq", T, "sequence length T");
    app.add_option("--threads", threads, "OpenMP and OpenBLAS threads");
    app.add_option("--steps", steps, "timed steps");
    app.add_option("--warmup", warmup, "untimed steps first");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    const agpt::Gpt2Flavor* f = agpt::find_gpt2_flavor(flavor);
    if (f == nullptr) agpt::fail("unknown gpt2 flavor '{}'", flavor);
    if (B < 1 || T < 1 || threads < 1 || steps < 1 || warmup < 0)
        agpt::fail("--batch, --seq, --threads and --steps must be positive");
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);

    agpt::Gpt2 model(f->args, B, T);
    model.init_weights("gpt2", 1337);
    agpt::AdamWConfig cfg;
    cfg.lr = 1e-4;
    cfg.beta1 = 0.9;
    cfg.beta2 = 0.999;
    cfg.eps = 1e-8;
    cfg.weight_decay = 0.0;
    agpt::AdamW opt(cfg, model.params().size());
    agpt::Rng rng(1);
    const std::size_t BT = static_cast<std::size_t>(B) * T;
    std::vector<int32_t> tokens(BT + 1);
    std::printf("gpt2 %s: %ld parameters, B=%d T=%d, %d threads, activations %.1f MiB\n",
                flavor.c_str(), f->args.num_params(), B, T, threads,
                static_cast<double>(model.activation_bytes()) / (1 << 20));

    std::vector<double> fb, up, total, cpu;
    for (int s = 0; s < warmup + steps; s++) {
        for (auto& t : tokens) t = static_cast<int32_t>(rng.below(f->args.vocab_size));
        const double c0 = cpu_s();
        const double t0 = now_s();
        model.zero_grad();
        const double loss =
            model.forward_backward(tokens.data(), tokens.data() + 1, B, T, 1.0 / BT) / BT;
        const double t1 = now_s();
        opt.step(model.params().data(), model.grads().data(), cfg.lr);
        const double t2 = now_s();
        const double c2 = cpu_s();
        const bool timed = s >= warmup;
        std::printf(
            "step %2d%s: loss %.4f  fwd_bwd %.3f s  update %.3f s  step %.3f s  (cpu %.3f s)\n", s,
            timed ? "" : " (warm-up)", loss, t1 - t0, t2 - t1, t2 - t0, c2 - c0);
        if (!timed) continue;
        fb.push_back(t1 - t0);
        up.push_back(t2 - t1);
        total.push_back(t2 - t0);
        cpu.push_back(c2 - c0);
    }
    const double flops = f->args.flops_per_token(T) * static_cast<double>(BT);
    std::printf(
        "{\"flavor\": \"%s\", \"batch\": %d, \"seq\": %d, \"threads\": %d, \"steps\": %d, "
        "\"fwd_bwd_s\": %.4f, \"update_s\": %.4f, \"step_s\": %.4f, \"min_step_s\": %.4f, "
        "\"cpu_s\": %.4f, \"tflops\": %.4f, \"peak_rss_gib\": %.3f}\n",
        flavor.c_str(), B, T, threads, steps, median(fb), median(up), median(total),
        *std::min_element(total.begin(), total.end()), median(cpu), flops / median(total) / 1e12,
        agpt::peak_rss_gib());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const agpt::Error& e) {
        std::fprintf(stderr, "agpt_gpt2_bench: %s\n", e.what());
        return 1;
    }
}
