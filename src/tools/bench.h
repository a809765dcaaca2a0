#pragma once
// `agpt bench`: times full training steps (forward, backward, clipping, the optimizer) on
// synthetic tokens for a flavor and shape, after warm-up steps, on training.device (cpu or cuda).
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/config.h"

namespace agpt {

struct BenchOptions {
    int steps = 10;
    int warmup = 2;
};

struct BenchResult {
    std::string flavor;
    std::string activation_checkpoint;  // the job's activation_checkpoint.mode
    long params = 0;
    long active_params = 0;  // MoE: what one token uses (tflops and mfu count these only)
    int batch = 0, seq = 0, threads = 0;
    double tok_per_s = 0, tflops = 0, mfu = 0, step_time_s = 0, peak_rss_gib = 0;
    double gemm_peak_tflops = 0;  // cpu: measured GEMM rate; cuda: the device's bf16 peak
    std::string device;           // training.device
    double loss = 0;              // mean loss of the last timed step (synthetic tokens)
    // cuda: device memory the job added (cudaMemGetInfo after the steps minus before the model:
    // parameters, gradients, optimizer state, activations, library workspaces and pools)
    double gpu_mem_gib = 0;
    // cuda: the kernel comparison switches set (kernels/cuda/switches.h), "NAME=VALUE" each.
    std::vector<std::string> kernel_switches;
    nlohmann::json to_json() const;
};

// Uses cfg.model.flavor (with the flavor's own vocabulary), local_batch_size, seq_len, threads,
// seed and the optimizer settings.
BenchResult run_bench(const JobConfig& cfg, const BenchOptions& opt);

}  // namespace agpt
