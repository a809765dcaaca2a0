// GPT-2 on the GPU (model/gpu/gpt2_gpu.h) against the CPU Gpt2 on the same parameters and
// tokens: parameters round-trip 1:1, logits, loss and every parameter gradient in fp32 mode
// (1e-4 relative; the tied wte gathers the head's and the lookup's gradients, the padding rows
// none), two accumulated micro-batches with clipping against the CPU's arithmetic, and the loss
// in bf16 mode (1e-2 relative) with the bf16 weight copy following params_changed(), and the
// bf16 step's run-to-run determinism.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda_test_util.h"
#include "gpu_parity.h"
#include "model/gpt2.h"
#include "model/gpu/gpt2_gpu.h"
#include "optim/grad_clip.h"

namespace agpt::cuda::test {
namespace {

struct Gpt2Case {
    const char* name;
    Gpt2Args args;
    int B, T;  // T not a multiple of the attention tiles, below the context (unused wpe rows)
};

// gpt2_tiny (2 layers, dim 64, 4 heads of 16) with a vocabulary of 300: wte has 384 rows, 84
// of them padding.
Gpt2Case tiny_padded() {
    Gpt2Args a = find_gpt2_flavor("gpt2_tiny")->args;
    a.vocab_size = 300;
    a.max_seq_len = 32;
    return {"gpt2_tiny vocab 300", a, 2, 19};
}

// Three layers of dim 96 with 2 heads of 48 (the attention's 64-wide tiles), vocabulary 512.
Gpt2Case wide_heads() {
    Gpt2Args a;
    a.dim = 96;
    a.n_layers = 3;
    a.n_heads = 2;
    a.vocab_size = 512;
    a.max_seq_len = 48;
    return {"dim 96 heads 2", a, 1, 40};
}

// Two layers of dim 128 with 2 heads of 64 (the tensor-core attention), widths that are
// multiples of 8 (the fused epilogues' operands), vocabulary 512.
Gpt2Case tensor_core_heads() {
    Gpt2Args a;
    a.dim = 128;
    a.n_layers = 2;
    a.n_heads = 2;
    a.vocab_size = 512;
    a.max_seq_len = 128;
    return {"dim 128 heads 2", a, 2, 96};
}

// GPT-2's initialisation with nonzero biases and LayerNorm parameters off 1/0, so that their
// gradients and every bias path are exercised.
void init(Gpt2& m, uint64_t seed) {
    m.init_weights("gpt2", seed);
    Rng rng(seed + 1);
    for (const ParamView& v : m.param_views()) {
        if (v.role != "bias" && v.role != "norm") continue;
        const auto r = random_floats(v.numel(), rng, -0.1f, 0.1f);
        float* p = m.params().data() + v.offset;
        for (std::size_t i = 0; i < r.size(); i++) p[i] += r[i];
    }
}

TEST(CudaGpt2, ParametersRoundTrip) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const Gpt2Case c = tiny_padded();
    Gpt2 cpu(c.args, 1, 1);
    init(cpu, 3);
    Gpt2Gpu gpu(c.args, c.B, c.T, GpuPrecision::bf16);
    ASSERT_EQ(gpu.num_params(), cpu.params().size());
    ASSERT_EQ(gpu.param_views().size(), cpu.param_views().size());
    gpu.upload_params(cpu.params().data());
    std::vector<float> back(gpu.num_params());
    gpu.download_params(back.data());
    EXPECT_EQ(0, std::memcmp(back.data(), cpu.params().data(), back.size() * sizeof(float)));
}

TEST(CudaGpt2, RefusesWhatItCannotRun) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const Gpt2Case c = tiny_padded();
    try {
        Gpt2Gpu m(c.args, 1, c.args.max_seq_len + 1, GpuPrecision::fp32);
        ADD_FAILURE() << "a sequence longer than wpe was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("rows of wpe"), std::string::npos) << e.what();
    }
    Gpt2Args wide = c.args;
    wide.dim = 256;
    wide.n_heads = 1;
    EXPECT_THROW(Gpt2Gpu(wide, 1, 8, GpuPrecision::fp32), Error);
}

void check_fp32_parity(const Gpt2Case& c) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const Gpt2Args& a = c.args;
    Gpt2 cpu(a, c.B, c.T);
    init(cpu, 7);
    Gpt2Gpu gpu(a, c.B, c.T, GpuPrecision::fp32);
    gpu.upload_params(cpu.params().data());
    std::vector<int32_t> tokens, targets;
    random_batch(a.vocab_size, c.B, c.T, 11, tokens, targets);
    const std::string tag = std::string(" ") + c.name;
    expect_forward_parity(cpu, gpu, tokens, targets, c.B, c.T, a.vocab_size, tag);
    // wte's padding rows and wpe's rows past T get exactly 0.
    const std::vector<float> grads = expect_grad_parity(cpu, gpu, tag);
    const ParamView& wte = cpu.view("wte.weight");
    const auto pad_begin = wte.offset + static_cast<std::size_t>(a.vocab_size) * a.dim;
    for (std::size_t i = pad_begin; i < wte.offset + wte.numel(); i++)
        ASSERT_EQ(grads[i], 0.0f) << "wte padding row gradient at " << i;
    const ParamView& wpe = cpu.view("wpe.weight");
    for (std::size_t i = wpe.offset + static_cast<std::size_t>(c.T) * a.dim;
         i < wpe.offset + wpe.numel(); i++)
        ASSERT_EQ(grads[i], 0.0f) << "wpe row past T has a gradient at " << i;
}

TEST(CudaGpt2, Fp32ParityTinyPaddedVocab) {
    check_fp32_parity(tiny_padded());
}
TEST(CudaGpt2, Fp32ParityWideHeads) {
    check_fp32_parity(wide_heads());
}

// Two micro-batches accumulated (async), the loss taken once, then clipping: against the CPU.
TEST(CudaGpt2, Fp32MicroBatchesAndClipping) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const Gpt2Case c = tiny_padded();
    Gpt2 cpu(c.args, c.B, c.T);
    init(cpu, 5);
    Gpt2Gpu gpu(c.args, c.B, c.T, GpuPrecision::fp32);
    gpu.upload_params(cpu.params().data());
    const int micro = 2;
    const double scale = 1.0 / (micro * c.B * c.T), max_norm = 0.1;
    cpu.zero_grad();
    gpu.zero_grad();
    double cpu_loss = 0.0;
    for (int m = 0; m < micro; m++) {
        std::vector<int32_t> tokens, targets;
        random_batch(c.args.vocab_size, c.B, c.T, 100 + m, tokens, targets);
        cpu_loss += cpu.forward_backward(tokens.data(), targets.data(), c.B, c.T, scale);
        gpu.forward_backward_async(tokens.data(), targets.data(), c.B, c.T, scale);
    }
    const double gpu_loss = gpu.take_loss_sum();
    const double cpu_norm = clip_grad_norm(cpu.grads().data(), cpu.grads().size(), max_norm);
    const double gpu_norm = gpu.clip_grad_norm(max_norm);
    std::printf("    loss cpu %.7f gpu %.7f, grad norm cpu %.7f gpu %.7f\n", cpu_loss * scale,
                gpu_loss * scale, cpu_norm, gpu_norm);
    EXPECT_GT(cpu_norm, max_norm) << "the test means to exercise clipping";
    expect_close("loss (2 micro-batches)", {static_cast<float>(gpu_loss)},
                 {static_cast<float>(cpu_loss)}, kTolFp32Long);
    expect_close("grad norm", {static_cast<float>(gpu_norm)}, {static_cast<float>(cpu_norm)},
                 kTolFp32Long);
    std::vector<float> grads(gpu.num_params());
    gpu.download_grads(grads.data());
    expect_close("clipped flat gradient", grads, cpu.grads(), kTolFp32Long);
}

// bf16 mode: the loss within 1e-2 of the fp32 CPU model's, gradients roughly along; a change
// of the fp32 parameters reaches the bf16 copy through params_changed().
void check_bf16(const Gpt2Case& c) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const Gpt2Args& a = c.args;
    Gpt2 cpu(a, c.B, c.T);
    init(cpu, 9);
    Gpt2Gpu gpu(a, c.B, c.T, GpuPrecision::bf16);
    gpu.upload_params(cpu.params().data());
    std::vector<int32_t> tokens, targets;
    random_batch(a.vocab_size, c.B, c.T, 13, tokens, targets);
    const double scale = 1.0 / (c.B * c.T);
    cpu.zero_grad();
    gpu.zero_grad();
    const double ref = cpu.forward_backward(tokens.data(), targets.data(), c.B, c.T, scale);
    const double got = gpu.forward_backward(tokens.data(), targets.data(), c.B, c.T, scale);
    std::printf("    bf16 loss sum: cpu (fp32) %.6f gpu (bf16) %.6f\n", ref, got);
    const std::string tag = std::string(" bf16 ") + c.name;
    expect_close("loss" + tag, {static_cast<float>(got)}, {static_cast<float>(ref)}, kTolBf16);
    std::vector<float> grads(gpu.num_params());
    gpu.download_grads(grads.data());
    expect_close("flat gradient" + tag, grads, cpu.grads(), 5e-2);

    // A plain SGD step written into the fp32 parameters on the device: after params_changed()
    // the bf16 loss follows the CPU model with the same step.
    const float lr = 0.5f;
    for (std::size_t i = 0; i < cpu.params().size(); i++) cpu.params()[i] -= lr * cpu.grads()[i];
    AGPT_CUDA_CHECK(cudaMemcpy(gpu.params_device(), cpu.params().data(),
                               cpu.params().size() * sizeof(float), cudaMemcpyHostToDevice));
    gpu.params_changed();
    const double ref_after = cpu.forward_loss(tokens.data(), targets.data(), c.B, c.T);
    const double got_after = gpu.forward_loss(tokens.data(), targets.data(), c.B, c.T);
    std::printf("    after the step: cpu %.6f gpu %.6f (before %.6f)\n", ref_after, got_after, got);
    EXPECT_LT(ref_after, ref) << "the test means to move the loss";
    expect_close("loss after params_changed" + tag, {static_cast<float>(got_after)},
                 {static_cast<float>(ref_after)}, kTolBf16);
}

TEST(CudaGpt2, Bf16LossTinyPaddedVocab) {
    check_bf16(tiny_padded());
}
TEST(CudaGpt2, Bf16LossWideHeads) {
    check_bf16(wide_heads());
}

// Two accumulations of the same micro-batch from zeroed gradients give the same loss and
// gradient bits in bf16: every kernel and cuBLASLt epilogue (the bias-gradient sums included)
// adds in a fixed order.
TEST(CudaGpt2, Bf16StepIsDeterministic) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const Gpt2Case c = tensor_core_heads();
    const Gpt2Args& a = c.args;
    const int B = c.B, T = c.T;
    Gpt2 cpu(a, B, T);
    init(cpu, 21);
    Gpt2Gpu gpu(a, B, T, GpuPrecision::bf16);
    gpu.upload_params(cpu.params().data());
    std::vector<int32_t> tokens, targets;
    random_batch(a.vocab_size, B, T, 23, tokens, targets);
    double losses[2];
    std::vector<float> grads[2];
    for (int run = 0; run < 2; run++) {
        gpu.zero_grad();
        losses[run] = gpu.forward_backward(tokens.data(), targets.data(), B, T, 1.0 / (B * T));
        grads[run].resize(gpu.num_params());
        gpu.download_grads(grads[run].data());
    }
    EXPECT_EQ(losses[0], losses[1]);
    std::size_t differing = 0;
    for (std::size_t i = 0; i < grads[0].size(); i++)
        differing += std::memcmp(&grads[0][i], &grads[1][i], sizeof(float)) != 0;
    EXPECT_EQ(differing, 0u) << "gradients differing in their bits";
}

}  // namespace
}  // namespace agpt::cuda::test
