#include "tools/bench.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "core/memory.h"
#include "core/rng.h"
#include "core/timer.h"
#include "kernels/cuda/switches.h"
#include "model/transformer.h"
#include "train/cuda_training.h"
#include "train/metrics.h"
#include "train/trainer.h"

namespace agpt {

nlohmann::json BenchResult::to_json() const {
    nlohmann::json j = {{"flavor", flavor},
                        {"device", device},
                        {"activation_checkpoint", activation_checkpoint},
                        {"params", params},
                        {"active_params", active_params},
                        {"batch", batch},
                        {"seq", seq},
                        {"threads", threads},
                        {"tok_per_s", tok_per_s},
                        {"tflops", tflops},
                        {"mfu", mfu},
                        {"step_time_s", step_time_s},
                        {"peak_rss_gib", peak_rss_gib},
                        {"gemm_peak_tflops", gemm_peak_tflops},
                        {"loss", loss}};
    if (device == "cuda") {
        j["gpu_mem_gib"] = gpu_mem_gib;
        j["kernel_switches"] = kernel_switches;
    }
    return j;
}

BenchResult run_bench(const JobConfig& cfg, const BenchOptions& opt) {
    validate_job_config(cfg);
    const bool on_cuda = cfg.training.device == "cuda";
    if (on_cuda) check_cuda_training(cfg);
    if (opt.steps <= 0) fail("--steps {}: must be positive", opt.steps);
    if (opt.warmup < 0) fail("--warmup {}: must not be negative", opt.warmup);
    BenchResult r;
    r.threads = set_thread_count(cfg.training.threads);
    // On the CPU the peak is taken before the model exists (so its buffers do not add to the
    // peak RSS) and after the timed steps; the higher one is kept: a probe that shares the cores
    // with another process reads low, and MFU would then read high. A GPU's is its data sheet's.
    const double peak_before = on_cuda ? cuda_peak_tflops().tflops : measure_gemm_peak_tflops();
    // What the job allocates on the device, without the CUDA context and other processes: the
    // figure PyTorch's max_memory_allocated is compared with.
    const double device_used_before = on_cuda ? cuda_memory_used_gib() : 0.0;
    const int B = cfg.training.local_batch_size, T = cfg.training.seq_len;
    // Synthetic tokens over the flavor's own vocabulary (0: no tokenizer involved).
    const auto model_ptr = on_cuda ? make_cuda_model(cfg, 0, B, T) : make_job_model(cfg, 0, B, T);
    LanguageModel& model = *model_ptr;
    model.init_weights(cfg.model.init, static_cast<uint64_t>(cfg.training.seed));

    std::vector<int32_t> tokens(static_cast<std::size_t>(B) * (T + 1));
    Rng rng(static_cast<uint64_t>(cfg.training.seed) + 1);
    for (auto& t : tokens) t = static_cast<int32_t>(rng.below(model.vocab_size()));
    std::vector<int32_t> inputs(static_cast<std::size_t>(B) * T), targets(inputs.size());
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            inputs[b * T + t] = tokens[b * (T + 1) + t];
            targets[b * T + t] = tokens[b * (T + 1) + t + 1];
        }

    const auto optimizer =
        on_cuda ? make_cuda_optimizer(cfg, model) : make_model_optimizer(cfg, model);
    if (optimizer->needs_hessian_hook())
        optimizer->set_hessian_hook([&] {
            gauss_newton_bartlett(model, inputs.data(), B, T, 1, cfg.training.max_norm,
                                  static_cast<uint64_t>(cfg.training.seed),
                                  static_cast<int>(optimizer->steps_taken()));
        });
    std::vector<double> times;
    for (int i = 0; i < opt.warmup + opt.steps; i++) {
        Timer t;
        model.zero_grad();
        // Returns once the device has finished the step's forward and backward.
        r.loss = model.forward_backward(inputs.data(), targets.data(), B, T, 1.0 / (B * T)) /
                 (static_cast<double>(B) * T);
        clip_model_gradients(model, cfg.training.max_norm);
        optimizer->step(1.0);
        model.after_optimizer_step();  // part of a MoE training step
        if (i >= opt.warmup) times.push_back(t.seconds());
    }
    std::sort(times.begin(), times.end());
    const std::size_t n = times.size();
    r.step_time_s = n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
    r.flavor = cfg.model.flavor;
    r.device = cfg.training.device;
    r.activation_checkpoint = cfg.activation_checkpoint.mode;
    r.params = model.num_params();
    const ModelArgs* agpt_args = model.agpt_args();
    r.active_params = agpt_args ? agpt_args->num_active_params() : r.params;
    r.batch = B;
    r.seq = T;
    r.tok_per_s = static_cast<double>(B) * T / r.step_time_s;
    r.tflops = model.flops_per_token(T) * r.tok_per_s / 1e12;
    r.peak_rss_gib = peak_rss_gib();
    r.gemm_peak_tflops = on_cuda ? peak_before : std::max(peak_before, measure_gemm_peak_tflops());
    if (on_cuda) {
        r.gpu_mem_gib = cuda_memory_used_gib() - device_used_before;
        r.kernel_switches = cuda::active_switches();
    }
    r.mfu = 100.0 * r.tflops / r.gemm_peak_tflops;
    return r;
}

}  // namespace agpt
