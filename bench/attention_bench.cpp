// Times attention_forward / attention_backward (float) for one shape. Built by hand:
//   g++ -std=c++20 -O3 -march=native -fopenmp -Isrc bench/attention_bench.cpp
//       src/kernels/cpu/attention.cpp -o /tmp/attention_bench
//   /tmp/attention_bench B T H KV hd [reps] [mode]
// GFLOP/s count the causal half of the products: forward 2·B·H·T²·hd (QKᵀ and PV),
// backward 5·B·H·T²·hd (QKᵀ recomputed, dO·Vᵀ, Pᵀ·dO, dSᵀ·Q, dS·K).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu/attention.h"

int main(int argc, char** argv) {
    if (argc < 6) {
        std::fprintf(stderr, "usage: %s B T H KV hd [reps]\n", argv[0]);
        return 1;
    }
    const int B = std::atoi(argv[1]), T = std::atoi(argv[2]), H = std::atoi(argv[3]);
    const int KV = std::atoi(argv[4]), hd = std::atoi(argv[5]);
    const int reps = argc > 6 ? std::atoi(argv[6]) : 5;
    const long row = static_cast<long>(H + 2 * KV) * hd;
    std::vector<float> qkv(static_cast<size_t>(B) * T * row), dqkv(qkv.size());
    std::vector<float> out(static_cast<size_t>(B) * T * H * hd), dout(out.size());
    std::vector<float> lse(static_cast<size_t>(B) * H * T);
    std::mt19937 gen(1);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& v : qkv) v = nd(gen);
    for (auto& v : dout) v = nd(gen);

    auto now = [] { return std::chrono::steady_clock::now(); };
    auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    // mode: 0 times both passes, 1 only the forward, 2 only the backward (for profiling).
    const int mode = argc > 7 ? std::atoi(argv[7]) : 0;
    agpt::cpu::attention_forward(out.data(), lse.data(), qkv.data(), B, T, H, KV, hd);
    double best_f = 1e30, best_b = 1e30;
    for (int r = 0; r < reps; ++r) {
        if (mode != 2) {
            auto t0 = now();
            agpt::cpu::attention_forward(out.data(), lse.data(), qkv.data(), B, T, H, KV, hd);
            best_f = std::min(best_f, secs(t0, now()));
        }
        if (mode != 1) {
            auto t0 = now();
            agpt::cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(),
                                          lse.data(), B, T, H, KV, hd);
            best_b = std::min(best_b, secs(t0, now()));
        }
    }
    const double f = 2.0 * B * H * static_cast<double>(T) * T * hd;
    std::printf("B=%d T=%d H=%d KV=%d hd=%d threads=%d", B, T, H, KV, hd, omp_get_max_threads());
    if (mode != 2) std::printf("  fwd %.3f ms %.1f GFLOP/s", best_f * 1e3, f / best_f * 1e-9);
    if (mode != 1) std::printf("  bwd %.3f ms %.1f GFLOP/s", best_b * 1e3, 2.5 * f / best_b * 1e-9);
    std::printf("\n");
    return 0;
}
