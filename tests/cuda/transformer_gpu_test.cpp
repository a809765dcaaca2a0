// The GPU transformer (model/gpu/transformer_gpu.h) against the CPU Transformer on the same
// parameters and tokens: the parameter layout, logits, loss and every parameter gradient in
// fp32 mode (1e-4 relative), a few training steps (two micro-batches, gradient-norm clipping,
// AdamW) against the CPU trainer's arithmetic, and the loss in bf16 mode (1e-2 relative); the
// same for every architecture switch (QK-norm, soft-caps, ReLU²), for MLA and MoE (plus the
// balance loss and the per-expert loads), and activation checkpointing (mode full: the same bits
// as mode none, in less memory, the loads counted once); and policy-gradient training's
// per-token log-probabilities and per-token-weighted gradient.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "cuda_test_util.h"
#include "gpu_parity.h"
#include "model/gpu/transformer_gpu.h"
#include "model/model_args.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "optim/cuda_optimizer.h"
#include "optim/grad_clip.h"

namespace agpt::cuda::test {
namespace {

struct ModelCase {
    const char* flavor;
    int B, T;  // T not a multiple of the attention tiles
};
const ModelCase kTiny{"tiny", 2, 19};
const ModelCase kDebug{"debugmodel", 1, 40};

ModelArgs args_of(const char* flavor) {
    const Flavor* f = find_flavor(flavor);
    if (!f) throw Error(std::string("no flavor ") + flavor);
    return f->args;
}

// An MLA + MoE flavor at the emulator's scale: a small vocabulary and, so that every part of the
// objective is covered, the sequence-level balance loss on.
ModelArgs small_moe(const char* flavor) {
    ModelArgs a = args_of(flavor);
    a.vocab_size = 256;
    a.aux_loss_alpha = 0.01;
    return a;
}
const ModelCase kMoeTiny{"moe_tiny", 2, 9};     // MLA with q LoRA and YaRN, sigmoid router
const ModelCase kMoeDebug{"moe_debug", 1, 13};  // plain wq, softmax router, 4 layers

// Every switch at once, with caps tight enough to change the tiny model's scores and logits
// (the flavors' attention cap of 30 is nearly the identity at this scale).
ModelArgs tight_kitchen_sink() {
    ModelArgs a = args_of("tiny_kitchen_sink");
    a.attn_softcap = 0.5;
    a.final_softcap = 2.0;
    return a;
}

TEST(CudaTransformer, ParameterLayoutMatchesCpu) {
    AGPT_REQUIRE_CUDA_DEVICE();
    for (const char* flavor :
         {"tiny", "tiny_qknorm", "tiny_relu2", "small", "moe_tiny", "moe_debug"}) {
        ModelArgs a = args_of(flavor);
        a.vocab_size = 256;  // the layout's rule does not depend on it; the emulator's memory does
        const Transformer cpu(a, 1, 1);
        const TransformerGpu gpu(a, 1, 1, GpuPrecision::fp32);
        const std::vector<ParamView>& want = cpu.param_views();
        const std::vector<ParamView>& got = gpu.param_views();
        ASSERT_EQ(got.size(), want.size()) << flavor;
        for (std::size_t i = 0; i < got.size(); i++) {
            EXPECT_EQ(got[i].name, want[i].name) << flavor;
            EXPECT_EQ(got[i].offset, want[i].offset) << flavor << " " << want[i].name;
            EXPECT_EQ(got[i].shape, want[i].shape) << flavor << " " << want[i].name;
            EXPECT_EQ(got[i].role, want[i].role) << flavor << " " << want[i].name;
        }
    }
}

// GpuModel::set_grads_ready: the same stretches as the CPU model's reports (the head and final
// norm, each layer, the embedding), and each is final when reported: the gradients read back at
// that moment (a download waits for what is queued) are those forward_backward leaves.
void check_grads_ready(const ModelArgs& a, const ModelCase& c) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Transformer cpu(a, c.B, c.T);
    cpu.init_weights("agpt", 7);
    TransformerGpu gpu(a, c.B, c.T, GpuPrecision::fp32);
    gpu.upload_params(cpu.params().data());
    std::vector<int32_t> tokens, targets;
    random_batch(a.vocab_size, c.B, c.T, 11, tokens, targets);
    using Ranges = std::vector<std::pair<std::size_t, std::size_t>>;
    Ranges want, got;
    cpu.set_grads_ready([&](std::size_t b, std::size_t e) { want.emplace_back(b, e); });
    cpu.zero_grad();
    cpu.forward_backward(tokens.data(), targets.data(), c.B, c.T, 0.5);

    const std::size_t n = gpu.num_params();
    std::vector<float> now(n), seen(n, -1e30f), final_grads(n);
    gpu.zero_grad();
    // A first call without reports; the second accumulates onto it (gradient accumulation).
    gpu.forward_backward(tokens.data(), targets.data(), c.B, c.T, 0.5);
    gpu.set_grads_ready([&](std::size_t b, std::size_t e) {
        got.emplace_back(b, e);
        gpu.download_grads(now.data());
        std::copy(now.begin() + static_cast<long>(b), now.begin() + static_cast<long>(e),
                  seen.begin() + static_cast<long>(b));
    });
    gpu.forward_backward(tokens.data(), targets.data(), c.B, c.T, 0.5);
    gpu.set_grads_ready({});
    gpu.download_grads(final_grads.data());
    EXPECT_EQ(got, want);
    ASSERT_EQ(got.size(), static_cast<std::size_t>(a.n_layers + 2));
    for (std::size_t i = 0; i < n; i++) ASSERT_EQ(seen[i], final_grads[i]) << i;
    // Unset: no reports.
    got.clear();
    gpu.forward_backward(tokens.data(), targets.data(), c.B, c.T, 0.5);
    EXPECT_TRUE(got.empty());
}

TEST(CudaTransformer, GradsReadyReportsTheCpuModelsStretchesEachFinal) {
    check_grads_ready(args_of(kTiny.flavor), kTiny);
}
TEST(CudaTransformer, GradsReadyReportsTheCpuModelsStretchesMoe) {
    check_grads_ready(small_moe(kMoeTiny.flavor), kMoeTiny);
}

// The MoE table flavors' MLA heads (qk_nope 128 + qk_rope 64 = 192, v_head 128; moe_debugmodel's
// router, YaRN and expert counts) on a model at the emulator's scale: dim 32, 2 heads,
// kv_lora_rank 16, one MoE layer with experts of width 16.
ModelArgs small_table_heads() {
    ModelArgs a = small_moe("moe_debugmodel");
    a.dim = 32;
    a.n_heads = a.n_kv_heads = 2;
    a.kv_lora_rank = 16;
    a.n_layers = 1;
    a.n_dense_layers = 0;
    a.moe_hidden = 16;
    return a;
}

// The GPU attention's head sizes stop at 192: MLA heads padded beyond are refused, naming the
// size.
TEST(CudaTransformer, RefusesMlaHeadsAbove192) {
    AGPT_REQUIRE_CUDA_DEVICE();
    ModelArgs a = small_table_heads();
    a.qk_nope_head_dim = 129;  // max(129 + 64, 128) = 193
    try {
        TransformerGpu m(a, 1, 8, GpuPrecision::fp32);
        ADD_FAILURE() << "MLA heads of 193 were accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("up to 192, got 193"), std::string::npos) << e.what();
    }
}

// fp32 mode: logits, loss and each named gradient against the CPU model (whose arena follows
// the same checkpointing mode).
void check_fp32_parity(const ModelArgs& a, const ModelCase& c,
                       ActivationCheckpoint ac = ActivationCheckpoint::none) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Transformer cpu(a, c.B, c.T, ac);
    cpu.init_weights("agpt", 7);
    TransformerGpu gpu(a, c.B, c.T, GpuPrecision::fp32, nullptr, ac);
    gpu.upload_params(cpu.params().data());
    std::vector<int32_t> tokens, targets;
    random_batch(a.vocab_size, c.B, c.T, 11, tokens, targets);
    const std::string tag = std::string(" ") + c.flavor;
    expect_forward_parity(cpu, gpu, tokens, targets, c.B, c.T, a.vocab_size, tag);

    if (a.is_moe()) {
        // The training forward's routing: the same per-expert loads (forward_logits and
        // forward_loss count nothing), and the same balance loss.
        const std::vector<std::vector<double>> loads = gpu.expert_loads();
        EXPECT_EQ(loads, cpu.expert_loads()) << tag;
        ASSERT_EQ(loads.size(), static_cast<std::size_t>(a.n_moe_layers())) << tag;
        double assigned = 0.0;
        for (double n : loads.front()) assigned += n;
        EXPECT_EQ(assigned, static_cast<double>(c.B) * c.T * a.top_k) << tag;
        std::printf("    aux loss: cpu %.8f gpu %.8f\n", cpu.moe_aux_loss(), gpu.moe_aux_loss());
        EXPECT_GT(cpu.moe_aux_loss(), 0.0) << tag;
        expect_close("aux loss" + tag, {static_cast<float>(gpu.moe_aux_loss())},
                     {static_cast<float>(cpu.moe_aux_loss())}, kTolFp32Long);
    }

    expect_grad_parity(cpu, gpu, tag);
}

void check_fp32_parity(const ModelCase& c) {
    check_fp32_parity(args_of(c.flavor), c);
}

TEST(CudaTransformer, Fp32ParityTiny) {
    check_fp32_parity(kTiny);
}
TEST(CudaTransformer, Fp32ParityDebugmodel) {
    check_fp32_parity(kDebug);
}
TEST(CudaTransformer, Fp32ParityQkNorm) {
    check_fp32_parity({"tiny_qknorm", 2, 19});
}
TEST(CudaTransformer, Fp32ParitySoftcap) {
    check_fp32_parity({"tiny_softcap", 2, 19});
}
TEST(CudaTransformer, Fp32ParityRelu2) {
    check_fp32_parity({"tiny_relu2", 2, 19});
}
TEST(CudaTransformer, Fp32ParityKitchenSinkTightCaps) {
    check_fp32_parity(tight_kitchen_sink(), {"tiny_kitchen_sink + caps 0.5/2", 2, 19});
}
TEST(CudaTransformer, Fp32ParityMoeTiny) {
    check_fp32_parity(small_moe(kMoeTiny.flavor), kMoeTiny);
}
TEST(CudaTransformer, Fp32ParityMoeDebug) {
    check_fp32_parity(small_moe(kMoeDebug.flavor), kMoeDebug);
}
TEST(CudaTransformer, Fp32ParityMlaTableHeads) {
    check_fp32_parity(small_table_heads(), {"moe_debugmodel heads 192, dim 32", 1, 16});
}
TEST(CudaTransformer, Fp32ParityMoeTinyCheckpointed) {
    check_fp32_parity(small_moe(kMoeTiny.flavor), {"moe_tiny, AC full", 2, 9},
                      ActivationCheckpoint::full);
}
TEST(CudaTransformer, Fp32ParityKitchenSinkCheckpointed) {
    check_fp32_parity(tight_kitchen_sink(), {"tiny_kitchen_sink + caps, AC full", 2, 19},
                      ActivationCheckpoint::full);
}

// The aux-loss-free bias step from the counted loads: the CPU model's new biases bit for bit,
// the counts reset; an optimizer step before it (AdamW with weight decay) leaves the biases alone.
TEST(CudaTransformer, ExpertBiasStepMatchesCpu) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const ModelCase c = kMoeTiny;
    const ModelArgs a = small_moe(c.flavor);
    Transformer cpu(a, c.B, c.T);
    cpu.init_weights("agpt", 21);
    TransformerGpu gpu(a, c.B, c.T, GpuPrecision::fp32);
    gpu.upload_params(cpu.params().data());
    std::vector<int32_t> tokens, targets;
    random_batch(a.vocab_size, c.B, c.T, 23, tokens, targets);
    cpu.zero_grad();
    gpu.zero_grad();
    cpu.forward_backward(tokens.data(), targets.data(), c.B, c.T, 0.1);
    gpu.forward_backward(tokens.data(), targets.data(), c.B, c.T, 0.1);
    ASSERT_EQ(gpu.expert_loads(), cpu.expert_loads());
    OptimizerSpec spec;
    spec.name = "AdamW";
    spec.hyper = {{"lr", 1e-3}, {"weight_decay", 0.5}};
    make_device_optimizer(spec, gpu)->step(1.0);
    const double coeff = 0.01;
    cpu.update_expert_bias(coeff);
    gpu.update_expert_bias(gpu.expert_loads(), coeff);
    std::vector<float> got(gpu.num_params());
    gpu.download_params(got.data());
    int biases = 0;
    for (const ParamView& v : cpu.param_views()) {
        if (v.role != "expert_bias") continue;
        biases++;
        const std::vector<float> want = slice(cpu.params(), v), have = slice(got, v);
        EXPECT_EQ(have, want) << v.name;
        float spread = 0.0f;
        for (float b : want) spread = std::max(spread, std::abs(b));
        EXPECT_GT(spread, 0.0f) << v.name << ": the step moved nothing";
    }
    EXPECT_EQ(biases, a.n_moe_layers());
    for (const std::vector<double>& load : gpu.expert_loads())
        EXPECT_EQ(load, std::vector<double>(load.size(), 0.0));
}

// Three steps of the CPU trainer's loop (two micro-batches, clip_grad_norm, AdamW) on both.
TEST(CudaTransformer, Fp32TrainingStepsMatchCpuTrainer) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const ModelCase c = kTiny;
    const ModelArgs a = args_of(c.flavor);
    Transformer cpu(a, c.B, c.T);
    cpu.init_weights("agpt", 3);
    TransformerGpu gpu(a, c.B, c.T, GpuPrecision::fp32);
    gpu.upload_params(cpu.params().data());
    const AdamWConfig cfg{1e-3, 0.9, 0.95, 1e-8, 0.1};
    AdamW cpu_opt(cfg, cpu.params().size());
    OptimizerSpec spec;
    spec.hyper = {{"lr", cfg.lr},
                  {"beta1", cfg.beta1},
                  {"beta2", cfg.beta2},
                  {"eps", cfg.eps},
                  {"weight_decay", cfg.weight_decay}};
    const auto gpu_opt = make_device_optimizer(spec, gpu);
    const double max_norm = 0.5;  // below the tiny model's initial norm: clipping happens
    const int micro = 2;
    const double scale = 1.0 / (micro * c.B * c.T);
    for (int step = 1; step <= 3; step++) {
        cpu.zero_grad();
        gpu.zero_grad();
        double cpu_loss = 0.0;
        for (int m = 0; m < micro; m++) {
            std::vector<int32_t> tokens, targets;
            random_batch(a.vocab_size, c.B, c.T, 100 * step + m, tokens, targets);
            cpu_loss += cpu.forward_backward(tokens.data(), targets.data(), c.B, c.T, scale);
            gpu.forward_backward_async(tokens.data(), targets.data(), c.B, c.T, scale);
        }
        const double gpu_loss = gpu.take_loss_sum();
        const double cpu_norm = clip_grad_norm(cpu.grads().data(), cpu.grads().size(), max_norm);
        const double gpu_norm = gpu.clip_grad_norm(max_norm);
        std::printf("    step %d: loss cpu %.7f gpu %.7f, grad norm cpu %.7f gpu %.7f\n", step,
                    cpu_loss * scale, gpu_loss * scale, cpu_norm, gpu_norm);
        const std::string tag = " step " + std::to_string(step);
        expect_close("loss" + tag, {static_cast<float>(gpu_loss)}, {static_cast<float>(cpu_loss)},
                     kTolFp32Long);
        expect_close("grad norm" + tag, {static_cast<float>(gpu_norm)},
                     {static_cast<float>(cpu_norm)}, kTolFp32Long);
        EXPECT_GT(cpu_norm, max_norm) << "the test means to exercise clipping";
        const double factor = step / 3.0;  // a warm-up-like changing lr
        cpu_opt.step(cpu.params().data(), cpu.grads().data(), cfg.lr * factor);
        gpu_opt->step(factor);
    }
    std::vector<float> got(gpu.num_params());
    gpu.download_params(got.data());
    for (const ParamView& v : cpu.param_views())
        expect_close("param " + v.name + " after 3 steps", slice(got, v), slice(cpu.params(), v),
                     kTolFp32Long);
}

// Policy-gradient training's calls (rl/grpo.h) against the CPU Transformer's on the same
// weights: per-token log-probabilities (0 where the target is ignored) and the gradient of
// Σ weights[i]·(−log p) with weights of mixed sign, zeros among them.
void check_policy_gradient_calls(const ModelArgs& a, const ModelCase& c, GpuPrecision precision,
                                 double tol) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Transformer cpu(a, c.B, c.T);
    cpu.init_weights("agpt", 21);
    TransformerGpu gpu(a, c.B, c.T, precision);
    gpu.upload_params(cpu.params().data());
    std::vector<int32_t> tokens, targets;
    random_batch(a.vocab_size, c.B, c.T, 17, tokens, targets);
    const std::size_t N = tokens.size();
    const std::string tag = std::string(" ") + c.flavor + " " + gpu_precision_name(precision);

    std::vector<double> lp_cpu(N), lp_gpu(N, 1.0);
    cpu.token_logprobs(tokens.data(), targets.data(), c.B, c.T, lp_cpu.data());
    gpu.token_logprobs(tokens.data(), targets.data(), c.B, c.T, lp_gpu.data());
    std::vector<float> lp_cpu_f(lp_cpu.begin(), lp_cpu.end()),
        lp_gpu_f(lp_gpu.begin(), lp_gpu.end());
    expect_close("token log-probabilities" + tag, lp_gpu_f, lp_cpu_f, tol);
    for (std::size_t i = 0; i < N; i++) {
        if (targets[i] < 0)
            EXPECT_EQ(lp_gpu[i], 0.0) << "ignored position " << i << tag;
        else
            EXPECT_LT(lp_gpu[i], 0.0) << "position " << i << tag;
    }

    Rng rng(23);
    std::vector<float> weights = random_floats(N, rng, -0.5f, 1.0f);
    for (std::size_t i = 1; i < N; i += 4) weights[i] = 0.0f;
    cpu.zero_grad();
    gpu.zero_grad();
    const double loss_cpu =
        cpu.forward_backward_weighted(tokens.data(), targets.data(), weights.data(), c.B, c.T);
    const double loss_gpu =
        gpu.forward_backward_weighted(tokens.data(), targets.data(), weights.data(), c.B, c.T);
    expect_close("weighted: loss" + tag, {static_cast<float>(loss_gpu)},
                 {static_cast<float>(loss_cpu)}, tol);
    std::vector<float> grads(gpu.num_params());
    gpu.download_grads(grads.data());
    expect_close("weighted: flat gradient" + tag, grads, cpu.grads(), tol);

    // The weights reach the gradient: all of them 0 leave it 0 (not the unweighted gradient).
    std::fill(weights.begin(), weights.end(), 0.0f);
    gpu.zero_grad();
    gpu.forward_backward_weighted(tokens.data(), targets.data(), weights.data(), c.B, c.T);
    gpu.download_grads(grads.data());
    double max_abs = 0.0;
    for (float g : grads) max_abs = std::max(max_abs, static_cast<double>(std::abs(g)));
    EXPECT_EQ(max_abs, 0.0) << "weights all 0" << tag;
}

TEST(CudaTransformer, PolicyGradientCallsFp32) {
    check_policy_gradient_calls(args_of(kTiny.flavor), kTiny, GpuPrecision::fp32, kTolFp32Long);
    check_policy_gradient_calls(tight_kitchen_sink(), {"tiny_kitchen_sink + caps 0.5/2", 2, 19},
                                GpuPrecision::fp32, kTolFp32Long);
}
TEST(CudaTransformer, PolicyGradientCallsBf16) {
    check_policy_gradient_calls(args_of(kTiny.flavor), kTiny, GpuPrecision::bf16, kTolBf16);
}

// bf16 mode: the loss within 1e-2 of the fp32 CPU model's, gradients roughly along (bf16
// activations: ~1e-2 relative per tensor).
void check_bf16(const ModelArgs& a, const ModelCase& c) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Transformer cpu(a, c.B, c.T);
    cpu.init_weights("agpt", 5);
    TransformerGpu gpu(a, c.B, c.T, GpuPrecision::bf16);
    gpu.upload_params(cpu.params().data());
    std::vector<int32_t> tokens, targets;
    random_batch(a.vocab_size, c.B, c.T, 13, tokens, targets);
    const double scale = 1.0 / (c.B * c.T);
    cpu.zero_grad();
    gpu.zero_grad();
    const double ref = cpu.forward_backward(tokens.data(), targets.data(), c.B, c.T, scale);
    const double got = gpu.forward_backward(tokens.data(), targets.data(), c.B, c.T, scale);
    std::printf("    bf16 loss sum: cpu (fp32) %.6f gpu (bf16) %.6f\n", ref, got);
    const std::string tag = std::string(" bf16 ") + c.flavor;
    expect_close("loss" + tag, {static_cast<float>(got)}, {static_cast<float>(ref)}, kTolBf16);
    std::vector<float> grads(gpu.num_params());
    gpu.download_grads(grads.data());
    expect_close("flat gradient" + tag, grads, cpu.grads(), 5e-2);
    // An AdamW step refreshes the bf16 copy: the loss moves and stays finite.
    OptimizerSpec spec;
    spec.hyper = {{"lr", 1e-3}};
    make_device_optimizer(spec, gpu)->step(1.0);
    const double after = gpu.forward_loss(tokens.data(), targets.data(), c.B, c.T);
    EXPECT_TRUE(std::isfinite(after));
    EXPECT_NE(after, got);
}

TEST(CudaTransformer, Bf16LossTiny) {
    check_bf16(args_of(kTiny.flavor), kTiny);
}
TEST(CudaTransformer, Bf16LossDebugmodel) {
    check_bf16(args_of(kDebug.flavor), kDebug);
}
TEST(CudaTransformer, Bf16LossMoe) {
    check_bf16(small_moe(kMoeTiny.flavor), kMoeTiny);
    check_bf16(small_moe(kMoeDebug.flavor), kMoeDebug);
}
TEST(CudaTransformer, Bf16LossSwitches) {
    for (const char* flavor : {"tiny_qknorm", "tiny_softcap", "tiny_relu2"})
        check_bf16(args_of(flavor), {flavor, 2, 19});
    check_bf16(tight_kitchen_sink(), {"tiny_kitchen_sink + caps 0.5/2", 2, 19});
}

// Activation checkpointing on the device: mode full recomputes each layer's forward with the
// same kernels in the same order, so losses and every gradient equal mode none's bit for bit,
// in both precisions, over two micro-batches of different shapes; the arena is smaller.
void check_checkpoint_bitwise(const ModelArgs& a, GpuPrecision precision, const char* tag,
                              int B = 2, int T = 19) {
    AGPT_REQUIRE_CUDA_DEVICE();
    Transformer cpu(a, 1, 1);
    cpu.init_weights("agpt", 9);
    TransformerGpu none(a, B, T, precision, nullptr, ActivationCheckpoint::none);
    TransformerGpu full(a, B, T, precision, nullptr, ActivationCheckpoint::full);
    none.upload_params(cpu.params().data());
    full.upload_params(cpu.params().data());
    none.zero_grad();
    full.zero_grad();
    double assigned = 0.0;  // MoE: what each layer's load must add up to
    for (int m = 0; m < 2; m++) {
        const int Bm = m == 0 ? B : 1, Tm = m == 0 ? T : 11;
        assigned += static_cast<double>(Bm) * Tm * a.top_k;
        std::vector<int32_t> tokens, targets;
        random_batch(a.vocab_size, Bm, Tm, 40 + m, tokens, targets);
        const double ln = none.forward_backward(tokens.data(), targets.data(), Bm, Tm, 0.03);
        const double lf = full.forward_backward(tokens.data(), targets.data(), Bm, Tm, 0.03);
        EXPECT_EQ(ln, lf) << tag << " micro-batch " << m;
    }
    std::vector<float> gn(none.num_params()), gf(full.num_params());
    none.download_grads(gn.data());
    full.download_grads(gf.data());
    std::size_t differing = 0;
    for (std::size_t i = 0; i < gn.size(); i++)
        differing += std::memcmp(&gn[i], &gf[i], sizeof(float)) != 0;
    EXPECT_EQ(differing, 0u) << tag << ": gradients differing in their bits";
    // The recomputation routes again without counting: each layer's load is one count of each
    // training forward's assignments.
    EXPECT_EQ(full.expert_loads(), none.expert_loads()) << tag;
    for (const std::vector<double>& load : full.expert_loads()) {
        double sum = 0.0;
        for (double n : load) sum += n;
        EXPECT_EQ(sum, assigned) << tag;
    }
    EXPECT_EQ(full.moe_aux_loss(), none.moe_aux_loss()) << tag;
    std::vector<float> lg_n(static_cast<std::size_t>(B) * T * a.vocab_size), lg_f(lg_n.size());
    std::vector<int32_t> tokens, targets;
    random_batch(a.vocab_size, B, T, 50, tokens, targets);
    none.forward_logits(tokens.data(), B, T, lg_n.data());
    full.forward_logits(tokens.data(), B, T, lg_f.data());
    EXPECT_EQ(std::memcmp(lg_n.data(), lg_f.data(), lg_n.size() * sizeof(float)), 0) << tag;
    std::printf("    %s activation bytes: none %zu, full %zu\n", tag, none.activation_bytes(),
                full.activation_bytes());
    EXPECT_LT(full.activation_bytes(), none.activation_bytes()) << tag;
}

TEST(CudaTransformer, CheckpointFullEqualsNoneBitwise) {
    check_checkpoint_bitwise(args_of("tiny"), GpuPrecision::fp32, "tiny fp32");
    check_checkpoint_bitwise(tight_kitchen_sink(), GpuPrecision::fp32, "kitchen sink fp32");
    check_checkpoint_bitwise(tight_kitchen_sink(), GpuPrecision::bf16, "kitchen sink bf16");
}
TEST(CudaTransformer, CheckpointFullEqualsNoneBitwiseMoe) {
    check_checkpoint_bitwise(small_moe("moe_tiny"), GpuPrecision::fp32, "moe_tiny fp32", 2, 12);
    check_checkpoint_bitwise(small_moe("moe_tiny"), GpuPrecision::bf16, "moe_tiny bf16", 2, 12);
}

// The arena under full checkpointing holds the layer inputs and one layer's working set:
// with more layers it grows by one (N, D) input per layer, not by a layer's activations.
TEST(CudaTransformer, CheckpointFullArenaGrowsByInputsOnly) {
    AGPT_REQUIRE_CUDA_DEVICE();
    ModelArgs a2 = args_of("tiny"), a4 = a2;
    a4.n_layers = 4;
    const int B = 2, T = 16;
    auto bytes = [&](const ModelArgs& a, ActivationCheckpoint ac) {
        return TransformerGpu(a, B, T, GpuPrecision::fp32, nullptr, ac).activation_bytes();
    };
    const std::size_t input = static_cast<std::size_t>(B) * T * a2.dim * sizeof(float);
    EXPECT_EQ(bytes(a4, ActivationCheckpoint::full) - bytes(a2, ActivationCheckpoint::full),
              2 * input);
    EXPECT_GT(bytes(a4, ActivationCheckpoint::none) - bytes(a2, ActivationCheckpoint::none),
              10 * input);
}

}  // namespace
}  // namespace agpt::cuda::test
