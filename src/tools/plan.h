#pragma once
// `agpt plan`: what a job needs before it runs — parameters, FLOPs per token and the memory of the
// CPU trainer split into parameters, gradients, optimizer state, activations and the largest
// temporary; for a cuda job (training.device = cuda) the memory of one GPU instead, from the GPU
// models' own byte counts (model/gpu/gpu_memory.h). Everything is computed from the flavor
// registry, the optimizer routing rule and the transformer's arena layout; nothing of the model's
// size is allocated, so an 80B flavor plans as fast as `tiny` (tests/plan_test.cpp checks each part
// against a real model's byte counts).
//
// Intended use:
//   const JobConfig cfg = load_job_config("", {{"model.flavor", "8B"}, ...});
//   const MemoryPlan plan = plan_memory(cfg, /*device_memory_gib=*/80);
//   std::fputs(format_plan(plan).c_str(), stdout);   // or plan_json(plan).dump()
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/language_model.h"
#include "model/model_args.h"
#include "train/config.h"

namespace agpt {

// The state one optimizer of the job keeps (Muon and Mano route non-matrix parameters to an
// AdamW: two entries), as Optimizer::state_bytes() counts it (step counters included).
struct OptimizerStatePart {
    std::string optimizer;  // "AdamW", "Muon", ...
    long params = 0;        // parameters it updates
    std::size_t bytes = 0;
};

// One rank's share of the agpt model under Megatron-style tensor parallelism over `degree`
// ranks, the split dist/ implements: column-parallel wq (heads/degree heads), wk and wv
// (kv_heads/degree), w1 and w3 (ffn/degree rows); row-parallel wo (columns heads·head_dim/degree)
// and w2 (columns ffn/degree); vocabulary-parallel tok_embeddings and output (vocab rows in
// `degree` contiguous ranges, the first vocab mod degree ranges one row longer); norms
// replicated. Dense agpt flavors only.
struct TensorParallelShard {
    int degree = 1, rank = 0;
    int heads = 0, kv_heads = 0;          // this rank's attention heads and KV heads
    int ffn_hidden = 0;                   // this rank's FFN units
    int vocab_begin = 0, vocab_rows = 0;  // this rank's rows of tok_embeddings and output
    long hidden_params = 0;               // this rank's attention and FFN matrices
    long rest_params = 0;                 // its embedding and head rows, the replicated norms
    long params() const { return hidden_params + rest_params; }
};

// Throws Error naming the degree and the number it does not divide (heads, KV heads, FFN
// units), or for an MLA/MoE flavor with degree > 1. The parameter counts are 0 for MLA/MoE.
TensorParallelShard tensor_parallel_shard(const ModelArgs& args, int degree, int rank);

struct MemoryPlan {
    std::string family = "agpt";  // model.name: agpt, or gpt2 (cuda jobs only)
    std::string flavor;
    ModelArgs args;  // vocabulary from the job's tokenizer, as the trainer sets it
    int batch = 0, seq_len = 0;
    long params = 0;  // total (= active for the dense agpt family)
    // The job's [activation_checkpoint] and [parallelism]: memory is per device, for tensor-
    // parallel rank 0 (the largest: it holds the longest vocabulary range) and, with ZeRO-1, the
    // optimizer state divided over the data-parallel ranks.
    ActivationCheckpoint activation_checkpoint = ActivationCheckpoint::none;
    int tensor_parallel_degree = 1, data_parallel_degree = 1, zero = 0;
    long local_params = 0;  // parameters on one tensor-parallel rank (= params without TP)
    long active_params = 0;
    double flops_per_token = 0;  // ModelArgs::flops_per_token(seq_len)
    std::string optimizer;
    std::vector<OptimizerStatePart> optimizer_parts;

    // Bytes per device. activation_bytes equals Transformer::activation_bytes() of a model built
    // for (batch, seq_len) and the job's activation checkpointing: saved activations + backward
    // buffers + the LM-head logits chunk. ZeRO-1 divides the optimizer state by the data-parallel
    // degree (approximately: ranks own whole parameters, so the largest rank may hold somewhat
    // more).
    std::size_t param_bytes = 0, grad_bytes = 0, optimizer_bytes = 0;
    // The forward arena (acts_), plus, for MLA/MoE models, the buffers those layers hold
    // themselves (their saved activations and backward temporaries).
    std::size_t saved_activation_bytes = 0;
    std::size_t backward_buffer_bytes = 0;  // residual gradient and per-layer temporaries (dacts_)
    std::size_t head_chunk_bytes = 0;       // logits of one LM-head chunk (scratch_)
    std::size_t activation_bytes = 0;       // the three above
    std::size_t rope_bytes = 0;             // cos/sin tables
    // The largest short-lived allocation on top of the above: the trainer's fp32 GEMM probe
    // (three 2048² matrices, measured once after the model and optimizer exist) or the
    // optimizer's per-matrix temporaries, whichever is larger.
    std::size_t temporary_bytes = 0;
    std::string temporary_what;
    // The process itself (code, libraries, BLAS and OpenMP thread buffers, the bundled data):
    // a measured constant for this platform (docs/benchmarks.md).
    std::size_t runtime_bytes = 0;
    std::size_t total_bytes = 0;

    // cuda jobs (training.device = cuda): bytes per GPU of the GPU model (TransformerGpu or
    // Gpt2Gpu; GpuModel::state_bytes() = param_bytes + grad_bytes + bf16_param_bytes and
    // activation_bytes() = activation_bytes exactly), the device optimizer's state (its host
    // mirror's state_bytes(), the CPU optimizer's), the ZeRO-1 transfer buffers and the
    // workspaces (cuBLAS's; Muon's, Mano's and ScheduleFreeAdamW's own buffers). runtime_bytes is
    // 0: the CUDA context, allocator fragmentation and NCCL's buffers are not counted.
    bool cuda = false;
    std::string precision;  // training.mixed_precision_param: bfloat16 | float32
    int expert_parallel_degree = 1;
    std::size_t bf16_param_bytes = 0;    // the bf16 copy of the parameters (bf16 mode)
    std::size_t layer_buffer_bytes = 0;  // MLA/MoE layers' own buffers (in activation_bytes)
    std::size_t batch_bytes = 0;         // tokens, targets, losses, per-token weights (in it too)
    std::size_t tp_stage_bytes = 0;  // bf16 under TP: fp32 staging of the group's sums (in it too)
    std::size_t zero_buffer_bytes = 0;  // ZeRO-1's padded and own transfer buffers

    double device_memory_gib = 0;  // 0: not given
    bool fits = true;              // total <= device memory (true when none was given)
};

// The process baseline counted in every plan (see MemoryPlan::runtime_bytes).
inline constexpr std::size_t kPlanRuntimeBytes = std::size_t{20} << 20;

// The job's plan: the CPU trainer's, or one GPU's for training.device = cuda (the agpt and gpt2
// families; bf16 or fp32 per training.mixed_precision_param). device_memory_gib > 0 also decides
// `fits`; vocab_size > 0 replaces the
// tokenizer's vocabulary (`agpt bench` runs the flavor's own). Validates the config; throws Error
// for an unknown flavor, optimizer or impossible shape.
MemoryPlan plan_memory(const JobConfig& cfg, double device_memory_gib = 0, int vocab_size = 0);

// Optimizer::state_bytes() of `optimizer` (a registry name) over a model whose hidden matrices
// (attention and FFN weights, which Muon and Mano take) hold `hidden` parameters and whose other
// tensors hold `rest`.
std::vector<OptimizerStatePart> optimizer_state_parts(const std::string& optimizer, long hidden,
                                                      long rest);

// A table a person reads: sizes in MiB/GiB, one row per part, the total and the verdict.
std::string format_plan(const MemoryPlan& plan);
// The same as a JSON object (byte counts exact).
nlohmann::json plan_json(const MemoryPlan& plan);

}  // namespace agpt
