#pragma once
// A CPU model against its GPU twin on the same batch (the transformer and GPT-2 tests): random
// batches, named slices of flat buffers, and the forward and gradient comparisons both run.
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "model/language_model.h"

namespace agpt::cuda::test {

// Random tokens and targets over a vocabulary of V, a few targets ignored (-1).
inline void random_batch(int V, int B, int T, uint64_t seed, std::vector<int32_t>& tokens,
                         std::vector<int32_t>& targets) {
    Rng rng(seed);
    tokens = random_tokens(static_cast<std::size_t>(B) * T, V, rng);
    targets = random_tokens(tokens.size(), V, rng);
    for (std::size_t i = 3; i < targets.size(); i += 11) targets[i] = -1;
}

inline std::vector<float> slice(const std::vector<float>& flat, const ParamView& v) {
    return {flat.begin() + static_cast<long>(v.offset),
            flat.begin() + static_cast<long>(v.offset + v.numel())};
}

// Logits, then from zeroed gradients the summed loss of forward_backward (scale 1/(B·T)) and the
// GPU's forward_loss, all within kTolFp32Long of the CPU's.
template <typename Cpu, typename Gpu>
void expect_forward_parity(Cpu& cpu, Gpu& gpu, const std::vector<int32_t>& tokens,
                           const std::vector<int32_t>& targets, int B, int T, int V,
                           const std::string& tag) {
    const std::size_t NV = static_cast<std::size_t>(B) * T * V;
    std::vector<float> ref_logits(NV), got_logits(NV);
    cpu.forward_logits(tokens.data(), B, T, ref_logits.data());
    gpu.forward_logits(tokens.data(), B, T, got_logits.data());
    expect_close("logits" + tag, got_logits, ref_logits, kTolFp32Long);

    const double scale = 1.0 / (B * T);
    cpu.zero_grad();
    gpu.zero_grad();
    const double ref_loss = cpu.forward_backward(tokens.data(), targets.data(), B, T, scale);
    const double got_loss = gpu.forward_backward(tokens.data(), targets.data(), B, T, scale);
    std::printf("    loss sum: cpu %.8f gpu %.8f\n", ref_loss, got_loss);
    expect_close("loss" + tag, {static_cast<float>(got_loss)}, {static_cast<float>(ref_loss)},
                 kTolFp32Long);
    const double fwd_loss = gpu.forward_loss(tokens.data(), targets.data(), B, T);
    expect_close("forward_loss" + tag, {static_cast<float>(fwd_loss)},
                 {static_cast<float>(ref_loss)}, kTolFp32Long);
}

// Every named gradient and the flat gradient as a whole (nothing outside the views, nothing left
// NaN) within kTolFp32Long of the CPU's; returns the GPU's.
template <typename Cpu, typename Gpu>
std::vector<float> expect_grad_parity(Cpu& cpu, Gpu& gpu, const std::string& tag) {
    std::vector<float> grads(gpu.num_params());
    gpu.download_grads(grads.data());
    for (const ParamView& v : cpu.param_views())
        expect_close("d " + v.name + tag, slice(grads, v), slice(cpu.grads(), v), kTolFp32Long);
    expect_close("flat gradient" + tag, grads, cpu.grads(), kTolFp32Long);
    return grads;
}

}  // namespace agpt::cuda::test
