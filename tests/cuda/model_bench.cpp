// agpt_cuda_model_bench: end-to-end training throughput of the GPU models on random tokens,
// batch 32 × seq 1024, bf16, one step = zero_grad, forward+backward per micro-batch, global-norm
// clipping (1.0), the optimizer's step (AdamW at lr 3e-4, or --optimizer NAME with its
// defaults; optim/cuda_optimizer.h):
//   --model llama124m (default): the GPU transformer (model/gpu/transformer_gpu.h) as a
//     Llama-style 124M (dim 768, 12 layers, 12 heads, 4 kv heads, vocab 32000, SwiGLU);
//   --model gpt2: GPT-2 124M (model/gpu/gpt2_gpu.h; the `124M` flavor, vocabulary 50257 with wte
//     padded to 50304 rows as the CPU model pads it).
// Prints one line per step and then, in the device check's `BENCH name value unit` format:
// tokens/s (median step), the median step time, MFU (the model's FLOPs per token against
// 989 TFLOP/s, H100 SXM bf16) and the peak device memory the run added (cudaMemGetInfo before
// the model and after each step: allocations, the stream-ordered pool and cuBLAS workspaces).
//
//   agpt_cuda_model_bench [--model llama124m|gpt2] [--batch 32] [--micro-batch 32] [--seq 1024]
//                         [--steps 8] [--warmup 3] [--precision bf16|fp32] [--layers 12]
//                         [--peak-tflops 989] [--breakdown] [--checkpoint none|full] [--qk-norm]
//                         [--relu2] [--attn-softcap 30] [--final-softcap 30] [--optimizer AdamW]
// --breakdown: one more step with a CUDA event after every op of forward and backward, then the
// time per op kind (summed over layers and chunks), largest first. --checkpoint full: activation
// checkpointing (each layer's forward recomputed before its backward); the switch options turn
// on the model's architecture switches (model_args.h).
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/runtime_info.h"
#include "model/gpt2.h"
#include "model/gpu/gpt2_gpu.h"
#include "model/gpu/transformer_gpu.h"
#include "model/transformer.h"
#include "optim/cuda_optimizer.h"

namespace {

using namespace agpt;

struct Options {
    int batch = 32, micro = 0, seq = 1024, steps = 8, warmup = 3, layers = 12;
    double peak_tflops = 989.0;
    bool breakdown = false, qk_norm = false, relu2 = false;
    double attn_softcap = 0.0, final_softcap = 0.0;
    std::string model = "llama124m";
    std::string optimizer = "AdamW";
    GpuPrecision precision = GpuPrecision::bf16;
    ActivationCheckpoint checkpoint = ActivationCheckpoint::none;
};

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) fail("{} needs a value", a);
            return argv[++i];
        };
        if (a == "--model")
            o.model = value();
        else if (a == "--batch")
            o.batch = std::stoi(value());
        else if (a == "--micro-batch")
            o.micro = std::stoi(value());
        else if (a == "--seq")
            o.seq = std::stoi(value());
        else if (a == "--steps")
            o.steps = std::stoi(value());
        else if (a == "--warmup")
            o.warmup = std::stoi(value());
        else if (a == "--layers")
            o.layers = std::stoi(value());
        else if (a == "--optimizer")
            o.optimizer = value();
        else if (a == "--optimizer")
            o.optimizer = value();
        else if (a == "--breakdown")
            o.breakdown = true;
        else if (a == "--peak-tflops")
            o.peak_tflops = std::stod(value());
        else if (a == "--qk-norm")
            o.qk_norm = true;
        else if (a == "--relu2")
            o.relu2 = true;
        else if (a == "--attn-softcap")
            o.attn_softcap = std::stod(value());
        else if (a == "--final-softcap")
            o.final_softcap = std::stod(value());
        else if (a == "--checkpoint") {
            const std::string c = value();
            if (c == "none")
                o.checkpoint = ActivationCheckpoint::none;
            else if (c == "full")
                o.checkpoint = ActivationCheckpoint::full;
            else
                fail("--checkpoint: none or full, not '{}'", c);
        } else if (a == "--precision") {
            const std::string p = value();
            if (p == "bf16" || p == "bfloat16")
                o.precision = GpuPrecision::bf16;
            else if (p == "fp32" || p == "float32")
                o.precision = GpuPrecision::fp32;
            else
                fail("--precision: bf16 or fp32, not '{}'", p);
        } else
            fail("unknown option '{}' (see the top of tests/cuda/model_bench.cpp)", a);
    }
    if (o.model != "llama124m" && o.model != "gpt2")
        fail("--model: llama124m or gpt2, not '{}'", o.model);
    if (o.micro <= 0) o.micro = o.batch;
    if (o.batch <= 0 || o.seq <= 0 || o.steps <= 0 || o.warmup < 0 || o.batch % o.micro != 0)
        fail("bad sizes: batch {} (a multiple of micro-batch {}), seq {}, steps {}", o.batch,
             o.micro, o.seq, o.steps);
    return o;
}

// The Llama-style 124M: torchtitan's FFN rule gives SwiGLU width 2048.
ModelArgs llama124m(int layers) {
    ModelArgs a;
    a.dim = 768;
    a.n_layers = layers;
    a.n_heads = 12;
    a.n_kv_heads = 4;
    a.vocab_size = 32000;
    a.multiple_of = 256;
    a.rope_theta = 10000.0;
    a.norm_eps = 1e-5;
    a.max_seq_len = 1024;
    return a;
}

double used_bytes() {
    std::size_t free_b = 0, total_b = 0;
    AGPT_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return static_cast<double>(total_b - free_b);
}

// Parameters as bench/torch_*_gpu.py initialise them (not the CPU models' init_weights, whose
// schemes differ): norms 1, biases 0, matrices and embeddings N(0, 0.02).
void init_params(GpuModel& model) {
    std::vector<float> host(model.num_params());
    std::mt19937_64 init_rng(1234);
    std::normal_distribution<float> normal(0.0f, 0.02f);
    for (const ParamView& v : model.param_views()) {
        float* p = host.data() + v.offset;
        std::size_t n = 1;  // v.numel() is defined with the CPU model
        for (int d : v.shape) n *= static_cast<std::size_t>(d);
        for (std::size_t i = 0; i < n; i++)
            p[i] = v.role == "norm" ? 1.0f : v.role == "bias" ? 0.0f : normal(init_rng);
    }
    model.upload_params(host.data());
}

// The timed training steps of one model with the device optimizer --optimizer names.
template <typename Model>
int train_bench(const Options& o, Model& model, const std::string& name, double flops, int vocab,
                double base, cuda::Stream& stream) {
    OptimizerSpec spec;
    spec.name = optimizer_info(o.optimizer).name;
    if (spec.name == "AdamW")
        spec.hyper = {
            {"lr", 3e-4}, {"beta1", 0.9}, {"beta2", 0.95}, {"eps", 1e-8}, {"weight_decay", 0.1}};
    const auto optimizer = make_device_optimizer(spec, model);
    std::string opt_tag = spec.name;  // "adamw" in the BENCH names
    for (char& ch : opt_tag) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    std::printf("optimizer %s: %.2f GiB of state on the device\n", spec.name.c_str(),
                optimizer->state_bytes() / 1073741824.0);
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<int32_t> tok(0, vocab - 1);
    const int accum = o.batch / o.micro;
    const std::size_t micro_n = static_cast<std::size_t>(o.micro) * o.seq;
    // A few distinct batches, cycled.
    const int pool = 3 * accum;
    std::vector<std::vector<int32_t>> inputs(pool), targets(pool);
    for (int i = 0; i < pool; i++) {
        std::vector<int32_t> seq(micro_n + 1);
        for (auto& t : seq) t = tok(rng);
        inputs[i].assign(seq.begin(), seq.end() - 1);
        targets[i].assign(seq.begin() + 1, seq.end());
    }

    const double grad_scale = 1.0 / (static_cast<double>(o.batch) * o.seq);
    cudaEvent_t ev[4];
    for (auto& e : ev) AGPT_CUDA_CHECK(cudaEventCreate(&e));
    std::vector<double> step_ms, fb_ms, clip_ms, opt_ms;
    double peak = used_bytes() - base;
    int next = 0;
    for (int step = 1; step <= o.warmup + o.steps; step++) {
        const cudaStream_t s = stream.get();
        AGPT_CUDA_CHECK(cudaEventRecord(ev[0], s));
        model.zero_grad();
        for (int m = 0; m < accum; m++, next = (next + 1) % pool)
            model.forward_backward_async(inputs[next].data(), targets[next].data(), o.micro, o.seq,
                                         grad_scale);
        AGPT_CUDA_CHECK(cudaEventRecord(ev[1], s));
        model.clip_grad_norm_async(1.0);
        AGPT_CUDA_CHECK(cudaEventRecord(ev[2], s));
        optimizer->step(1.0);
        AGPT_CUDA_CHECK(cudaEventRecord(ev[3], s));
        const double loss = model.take_loss_sum() * grad_scale;  // synchronises
        const double norm = model.last_grad_norm();
        float t_all = 0, t_fb = 0, t_clip = 0, t_opt = 0;
        AGPT_CUDA_CHECK(cudaEventElapsedTime(&t_all, ev[0], ev[3]));
        AGPT_CUDA_CHECK(cudaEventElapsedTime(&t_fb, ev[0], ev[1]));
        AGPT_CUDA_CHECK(cudaEventElapsedTime(&t_clip, ev[1], ev[2]));
        AGPT_CUDA_CHECK(cudaEventElapsedTime(&t_opt, ev[2], ev[3]));
        peak = std::max(peak, used_bytes() - base);
        std::printf(
            "step %2d%s: loss %.4f, grad norm %.4f, %.1f ms (fwd+bwd %.1f, clip %.2f, "
            "%s %.2f), %.0f tok/s\n",
            step, step <= o.warmup ? " (warm-up)" : "", loss, norm, t_all, t_fb, t_clip,
            opt_tag.c_str(), t_opt, o.batch * o.seq / (t_all * 1e-3));
        std::fflush(stdout);
        if (!std::isfinite(loss)) fail("step {}: loss is {}", step, loss);
        if (step > o.warmup) {
            step_ms.push_back(t_all);
            fb_ms.push_back(t_fb);
            clip_ms.push_back(t_clip);
            opt_ms.push_back(t_opt);
        }
    }
    if (o.breakdown) {
        // One more step, an event after each op; the time between consecutive events is the
        // op's (events add a little overhead of their own).
        std::vector<std::pair<std::string, cudaEvent_t>> marks;
        const cudaStream_t s = stream.get();
        auto record = [&](const char* op) {
            cudaEvent_t e;
            AGPT_CUDA_CHECK(cudaEventCreate(&e));
            AGPT_CUDA_CHECK(cudaEventRecord(e, s));
            marks.emplace_back(op, e);
        };
        model.set_op_hook(record);
        record("start");
        model.zero_grad();
        record("zero_grad");
        for (int m = 0; m < accum; m++, next = (next + 1) % pool)
            model.forward_backward_async(inputs[next].data(), targets[next].data(), o.micro, o.seq,
                                         grad_scale);
        model.clip_grad_norm_async(1.0);
        record("clip_grad_norm");
        optimizer->step(1.0);
        record(opt_tag.c_str());
        model.set_op_hook(nullptr);
        model.take_loss_sum();
        std::vector<std::pair<std::string, double>> totals;
        double all = 0.0;
        for (std::size_t i = 1; i < marks.size(); i++) {
            float t = 0;
            AGPT_CUDA_CHECK(cudaEventElapsedTime(&t, marks[i - 1].second, marks[i].second));
            all += t;
            auto it = std::find_if(totals.begin(), totals.end(),
                                   [&](const auto& p) { return p.first == marks[i].first; });
            if (it == totals.end())
                totals.emplace_back(marks[i].first, t);
            else
                it->second += t;
        }
        for (auto& m : marks) AGPT_CUDA_CHECK(cudaEventDestroy(m.second));
        std::sort(totals.begin(), totals.end(),
                  [](const auto& x, const auto& y) { return x.second > y.second; });
        std::printf("breakdown of one step (%.1f ms with %zu events):\n", all, marks.size());
        for (const auto& [op, t] : totals)
            std::printf("  %-28s %8.2f ms %5.1f %%\n", op.c_str(), t, 100.0 * t / all);
        std::fflush(stdout);
    }
    for (auto& e : ev) AGPT_CUDA_CHECK(cudaEventDestroy(e));
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        const std::size_t n = v.size();
        return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    };
    const double ms = median(step_ms);
    const double tok_s = o.batch * o.seq / (ms * 1e-3);
    const double mfu = 100.0 * flops * tok_s / (o.peak_tflops * 1e12);
    const std::string tag = std::string("model_") + name +
                            (o.precision == GpuPrecision::fp32 ? "_fp32" : "") +
                            (o.layers != 12 ? "_L" + std::to_string(o.layers) : "");
    std::printf("FLOPs/token %.4g (6·(N − N_emb) + 12·L·H·hd·T), %.1f TFLOP/s\n", flops,
                flops * tok_s / 1e12);
    std::printf("BENCH %s_tok_per_s %.0f tok/s\n", tag.c_str(), tok_s);
    std::printf("BENCH %s_step_ms %.2f ms\n", tag.c_str(), ms);
    std::printf("BENCH %s_fwd_bwd_ms %.2f ms\n", tag.c_str(), median(fb_ms));
    std::printf("BENCH %s_clip_ms %.3f ms\n", tag.c_str(), median(clip_ms));
    std::printf("BENCH %s_%s_ms %.3f ms\n", tag.c_str(), opt_tag.c_str(), median(opt_ms));
    std::printf("BENCH %s_mfu %.2f %%\n", tag.c_str(), mfu);
    std::printf("BENCH %s_peak_mem_gib %.2f GiB\n", tag.c_str(), peak / 1073741824.0);
    return 0;
}

int run(const Options& o) {
    AGPT_CUDA_CHECK(cudaFree(nullptr));  // create the context before the baseline
    const double base = used_bytes();
    std::printf(
        "batch %d (micro-batches of %d) x seq %d = %d tokens/step; %d warm-up + %d timed "
        "steps\n",
        o.batch, o.micro, o.seq, o.batch * o.seq, o.warmup, o.steps);
    cuda::Stream stream;
    const auto t0 = std::chrono::steady_clock::now();
    auto report_setup = [&](const GpuModel& model) {
        const double setup_s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("setup %.1f s; device state %.2f GiB, activations+scratch %.2f GiB\n", setup_s,
                    model.state_bytes() / 1073741824.0, model.activation_bytes() / 1073741824.0);
        std::fflush(stdout);
    };
    if (o.model == "gpt2") {
        Gpt2Args a = find_gpt2_flavor("124M")->args;
        a.n_layers = o.layers;
        std::printf(
            "model: gpt2 124M (dim %d, %d layers, %d heads, vocab %d padded to %d, ffn %d, "
            "context %d), %.1fM parameters, %s\n",
            a.dim, a.n_layers, a.n_heads, a.vocab_size, a.padded_vocab(), a.ffn_hidden(),
            a.max_seq_len, a.num_params() / 1e6, gpu_precision_name(o.precision));
        Gpt2Gpu model(a, o.micro, o.seq, o.precision, stream.get());
        init_params(model);
        report_setup(model);
        return train_bench(o, model, "gpt2_124m", a.flops_per_token(o.seq), a.vocab_size, base,
                           stream);
    }
    ModelArgs a = llama124m(o.layers);
    a.qk_norm = o.qk_norm;
    a.attn_softcap = o.attn_softcap;
    a.final_softcap = o.final_softcap;
    if (o.relu2) a.ffn = FfnType::relu2;
    std::printf(
        "model: llama124m (dim %d, %d layers, %d heads, %d kv heads, vocab %d, ffn %d), "
        "%.1fM parameters, %s; switches: %s; activation checkpointing %s\n",
        a.dim, a.n_layers, a.n_heads, a.n_kv_heads, a.vocab_size, a.ffn_hidden(),
        a.num_params() / 1e6, gpu_precision_name(o.precision), a.describe_switches().c_str(),
        o.checkpoint == ActivationCheckpoint::full ? "full" : "none");
    TransformerGpu model(a, o.micro, o.seq, o.precision, stream.get(), o.checkpoint);
    init_params(model);
    report_setup(model);
    return train_bench(o, model, "llama124m", a.flops_per_token(o.seq), a.vocab_size, base, stream);
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Options o = parse(argc, argv);
        const agpt::cuda::RuntimeInfo info = agpt::cuda::query_runtime();
        if (info.devices.empty()) {
            std::printf("agpt_cuda_model_bench: skipped: no CUDA device (%s)\n",
                        info.error.c_str());
            return 0;
        }
        std::printf("agpt_cuda_model_bench on %s\n", info.devices[0].name.c_str());
        return run(o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "agpt_cuda_model_bench: %s\n", e.what());
        return 1;
    }
}
