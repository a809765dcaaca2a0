// agpt plan: each part of the estimate against the real model's and optimizer's byte counts, and
// the total against the peak RSS of real training runs (in a child process).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "model/model_zoo.h"
#include "model/transformer.h"
#include "scoped_env.h"
#include "tools/plan.h"
#include "train/config.h"
#include "train/trainer.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

JobConfig job(const std::string& flavor, int B, int T, const std::string& optimizer = "AdamW",
              const ConfigOverrides& extra = {}) {
    ConfigOverrides o = {{"model.flavor", flavor},
                         {"training.local_batch_size", std::to_string(B)},
                         {"training.seq_len", std::to_string(T)},
                         {"optimizer.name", optimizer}};
    o.insert(o.end(), extra.begin(), extra.end());
    return load_job_config("", o);
}

const std::vector<std::string> kOptimizers = {
    "AdamW", "Muon", "Mano", "SophiaG", "SPAM", "Lion", "ScheduleFreeAdamW", "AdEMAMix"};

TEST(Plan, PartsEqualTheRealModelsByteCounts) {
    struct Case {
        std::string flavor;
        int B, T;
    };
    for (const Case& c : std::vector<Case>{{"tiny", 4, 32},
                                           {"tiny_kitchen_sink", 3, 20},
                                           {"small", 8, 256},
                                           {"small_qknorm_softcap", 2, 64},
                                           {"small_relu2", 2, 64},
                                           {"debugmodel", 4, 128},
                                           {"debugmodel", 1, 1},
                                           {"moe_tiny", 2, 24},
                                           {"moe_debug", 2, 64},
                                           {"moe_debug_dense", 2, 16}}) {
        for (const std::string mode : {"none", "full"}) {
            SCOPED_TRACE(c.flavor + " " + std::to_string(c.B) + "x" + std::to_string(c.T) + " " +
                         mode);
            const JobConfig cfg =
                job(c.flavor, c.B, c.T, "AdamW", {{"activation_checkpoint.mode", mode}});
            const MemoryPlan plan = plan_memory(cfg);
            EXPECT_EQ(plan.activation_checkpoint, activation_checkpoint_from(mode));
            Transformer model(plan.args, c.B, c.T, plan.activation_checkpoint);
            EXPECT_EQ(plan.params, plan.args.num_params());
            EXPECT_EQ(plan.active_params, plan.args.num_active_params());
            EXPECT_EQ(plan.param_bytes, model.params().size() * sizeof(float));
            EXPECT_EQ(plan.grad_bytes, model.grads().size() * sizeof(float));
            EXPECT_EQ(plan.activation_bytes, model.activation_bytes());
            EXPECT_EQ(
                plan.activation_bytes,
                plan.saved_activation_bytes + plan.backward_buffer_bytes + plan.head_chunk_bytes);
            EXPECT_DOUBLE_EQ(plan.flops_per_token, plan.args.flops_per_token(c.T));
            EXPECT_EQ(plan.optimizer_bytes, make_model_optimizer(cfg, model)->state_bytes());
            EXPECT_EQ(plan.total_bytes, plan.param_bytes + plan.grad_bytes + plan.optimizer_bytes +
                                            plan.activation_bytes + plan.rope_bytes +
                                            plan.temporary_bytes + plan.runtime_bytes);
        }
    }
}

TEST(Plan, OptimizerStateEqualsStateBytesOfEveryOptimizer) {
    for (const std::string flavor : {"tiny", "small_kitchen_sink", "debugmodel", "moe_tiny"}) {
        for (const std::string& name : kOptimizers) {
            SCOPED_TRACE(flavor + std::string(" ") + name);
            const JobConfig cfg = job(flavor, 1, 1, name);
            const MemoryPlan plan = plan_memory(cfg);
            Transformer model(plan.args, 1, 1);
            const auto opt = make_model_optimizer(cfg, model);
            EXPECT_EQ(plan.optimizer_bytes, opt->state_bytes());
            // Per optimizer: the parameters the routing gives it.
            for (const auto& part : plan.optimizer_parts) {
                long routed = 0;
                for (const auto& r : opt->describe_routing()) {
                    if (r.optimizer != part.optimizer) continue;
                    long n = 1;
                    for (int d : r.shape) n *= d;
                    routed += n;
                }
                EXPECT_EQ(part.params, routed) << part.optimizer;
            }
        }
    }
}

TEST(Plan, HugeFlavorsPlanWithoutAllocatingAndTheVerdictFollowsTheDevice) {
    const MemoryPlan plan = plan_memory(job("80B", 1, 8192, "Muon"), 80);
    EXPECT_GT(plan.params, 70'000'000'000L);
    EXPECT_EQ(plan.param_bytes, static_cast<std::size_t>(plan.params) * 4);
    EXPECT_EQ(plan.optimizer_parts.size(), 2u);
    EXPECT_FALSE(plan.fits);
    const MemoryPlan tiny = plan_memory(job("tiny", 1, 16), 1);
    EXPECT_TRUE(tiny.fits);
    EXPECT_TRUE(plan_memory(job("tiny", 1, 16)).fits);  // no device: nothing to refuse
    const std::string text = format_plan(plan);
    EXPECT_NE(text.find("does NOT fit in 80 GiB"), std::string::npos) << text;
    const nlohmann::json j = plan_json(plan);
    EXPECT_EQ(j["params"].get<long>(), plan.params);
    EXPECT_EQ(j["bytes"]["total"].get<std::size_t>(), plan.total_bytes);
    EXPECT_FALSE(j["fits"].get<bool>());
    EXPECT_THROW(plan_memory(job("tiny", 1, 16), -1), Error);
}

// The split rule applied to the real model's tensors by name, independently of
// tensor_parallel_shard's formulas: column-parallel matrices keep 1/degree of their rows,
// row-parallel ones 1/degree of their columns, the embedding and head their vocabulary range,
// norms everything.
long local_params_by_name(const Transformer& model, int degree, int vocab_rows) {
    long n = 0;
    for (const ParamView& v : model.param_views()) {
        const long rows = v.shape[0], cols = v.shape.size() > 1 ? v.shape[1] : 1;
        const auto ends = [&](const char* suffix) { return v.name.ends_with(suffix); };
        if (ends("wq.weight") || ends("wk.weight") || ends("wv.weight") || ends("w1.weight") ||
            ends("w3.weight")) {
            EXPECT_EQ(rows % degree, 0) << v.name;
            n += rows / degree * cols;
        } else if (ends("wo.weight") || ends("w2.weight")) {
            EXPECT_EQ(cols % degree, 0) << v.name;
            n += rows * (cols / degree);
        } else if (v.name == "tok_embeddings.weight" || v.name == "output.weight") {
            n += static_cast<long>(vocab_rows) * cols;
        } else {
            EXPECT_EQ(v.role, "norm") << v.name;
            n += static_cast<long>(v.numel());
        }
    }
    return n;
}

TEST(PlanTensorParallel, ShardsFollowTheSplitOfEveryTensor) {
    for (const std::string flavor : {"tiny", "small_kitchen_sink", "debugmodel_qknorm"}) {
        ModelArgs a = resolve_model_args(flavor, {});
        a.vocab_size = 1001;  // not a multiple of any degree below: uneven vocabulary ranges
        const Transformer model(a, 1, 1);
        for (int degree : {1, 2}) {
            SCOPED_TRACE(flavor + " TP " + std::to_string(degree));
            int next_row = 0;
            long hidden = 0;
            for (int rank = 0; rank < degree; rank++) {
                const TensorParallelShard s = tensor_parallel_shard(a, degree, rank);
                EXPECT_EQ(s.vocab_begin, next_row);
                EXPECT_EQ(s.vocab_rows, 1001 / degree + (rank < 1001 % degree ? 1 : 0));
                next_row += s.vocab_rows;
                EXPECT_EQ(s.heads * degree, a.n_heads);
                EXPECT_EQ(s.kv_heads * degree, a.n_kv_heads);
                EXPECT_EQ(s.ffn_hidden * degree, a.ffn_hidden());
                EXPECT_EQ(s.params(), local_params_by_name(model, degree, s.vocab_rows));
                hidden += s.hidden_params;
            }
            EXPECT_EQ(next_row, 1001);
            // The matrices are split without overlap; at degree 1 the shard is the model.
            const TensorParallelShard one = tensor_parallel_shard(a, 1, 0);
            EXPECT_EQ(hidden, one.hidden_params);
            EXPECT_EQ(one.params(), a.num_params());
        }
    }
}

TEST(PlanTensorParallel, RefusesMlaMoeAndIndivisibleHeads) {
    auto error_of = [](const std::function<void()>& f) {
        try {
            f();
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    const ConfigOverrides tp4 = {{"parallelism.tensor_parallel_degree", "4"}};
    // small: 6 heads, 6 KV heads.
    const std::string heads =
        error_of([&] { plan_memory(job("small", 1, 8, "AdamW", tp4), 0, 258); });
    EXPECT_NE(heads.find("tensor_parallel_degree = 4"), std::string::npos) << heads;
    EXPECT_NE(heads.find("n_heads 6"), std::string::npos) << heads;
    ModelArgs kv = resolve_model_args("debugmodel", {});
    kv.n_kv_heads = 2;
    const std::string kv_heads = error_of([&] { tensor_parallel_shard(kv, 4, 0); });
    EXPECT_NE(kv_heads.find("n_kv_heads 2"), std::string::npos) << kv_heads;
    const std::string moe = error_of([&] {
        plan_memory(job("moe_debug", 1, 8, "AdamW", {{"parallelism.tensor_parallel_degree", "2"}}),
                    0, 258);
    });
    EXPECT_NE(moe.find("MLA/MoE"), std::string::npos) << moe;
}

// Per device under TP: parameters, gradients and optimizer state follow the shard; the
// per-head and per-FFN-unit activations divide by the degree, the residual stream does not.
TEST(PlanTensorParallel, PerDeviceMemoryFollowsTheShard) {
    for (const std::string mode : {"none", "full"}) {
        SCOPED_TRACE(mode);
        const int B = 2, T = 64;
        const ConfigOverrides m = {{"activation_checkpoint.mode", mode}};
        ConfigOverrides m2 = m;
        m2.push_back({"parallelism.tensor_parallel_degree", "2"});
        const MemoryPlan one = plan_memory(job("debugmodel", B, T, "AdamW", m), 0, 1001);
        const MemoryPlan two = plan_memory(job("debugmodel", B, T, "AdamW", m2), 0, 1001);
        const TensorParallelShard s = tensor_parallel_shard(two.args, 2, 0);
        EXPECT_EQ(two.tensor_parallel_degree, 2);
        EXPECT_EQ(two.params, one.params);
        EXPECT_EQ(two.local_params, s.params());
        EXPECT_EQ(two.param_bytes, static_cast<std::size_t>(s.params()) * 4);
        EXPECT_EQ(two.grad_bytes, two.param_bytes);
        EXPECT_EQ(two.optimizer_bytes, static_cast<std::size_t>(s.params()) * 8 + 8);  // AdamW
        const ModelArgs& a = one.args;
        const std::size_t N = B * T, D = a.dim, L = a.n_layers;
        // Per layer, split by heads/units: qkv, attention output, lse, h13 (w1|w3), gate.
        const std::size_t split_per_layer =
            N * (a.qkv_dim() + a.dim + a.n_heads + a.ffn_in_dim() + a.ffn_hidden());
        const std::size_t layers_saved = mode == "full" ? 1 : L;
        EXPECT_EQ(one.saved_activation_bytes - two.saved_activation_bytes,
                  layers_saved * split_per_layer / 2 * 4);
        // Backward: residual gradient and norm gradient whole; gate, h13, attention, qkv halved.
        const std::size_t split_backward =
            N * (a.ffn_hidden() + a.ffn_in_dim() + a.dim + a.qkv_dim());
        EXPECT_EQ(one.backward_buffer_bytes - two.backward_buffer_bytes, split_backward / 2 * 4);
        EXPECT_EQ(two.backward_buffer_bytes, (2 * N * D + split_backward / 2) * 4);
        // The LM-head chunk: rank 0's 501 of 1001 columns.
        EXPECT_EQ(two.head_chunk_bytes, N * 501 * 4);
        EXPECT_EQ(one.head_chunk_bytes, N * 1001 * 4);
    }
}

TEST(PlanTensorParallel, ZeroDividesOptimizerStateAndTheHeaderShowsTheDegrees) {
    const MemoryPlan plain = plan_memory(job("small", 4, 64), 0, 258);
    const MemoryPlan zero = plan_memory(job("small", 4, 64, "AdamW",
                                            {{"parallelism.data_parallel_degree", "4"},
                                             {"parallelism.zero", "1"},
                                             {"parallelism.tensor_parallel_degree", "2"},
                                             {"activation_checkpoint.mode", "full"}}),
                                        0, 258);
    const MemoryPlan tp = plan_memory(
        job("small", 4, 64, "AdamW",
            {{"parallelism.tensor_parallel_degree", "2"}, {"activation_checkpoint.mode", "full"}}),
        0, 258);
    EXPECT_EQ(zero.optimizer_bytes, (tp.optimizer_bytes + 3) / 4);
    EXPECT_LT(tp.optimizer_bytes, plain.optimizer_bytes);
    EXPECT_EQ(zero.param_bytes, tp.param_bytes);  // ZeRO-1 keeps every parameter
    const std::string text = format_plan(zero);
    EXPECT_NE(text.find("activation checkpointing full | tensor parallel 2"), std::string::npos)
        << text;
    EXPECT_NE(text.find("data parallel 4, ZeRO-1"), std::string::npos) << text;
    const nlohmann::json j = plan_json(zero);
    EXPECT_EQ(j["tensor_parallel_degree"], 2);
    EXPECT_EQ(j["data_parallel_degree"], 4);
    EXPECT_EQ(j["zero"], 1);
    EXPECT_EQ(j["activation_checkpoint"], "full");
    EXPECT_EQ(j["local_params"].get<long>(), zero.local_params);
}

// cuda jobs (training.device = cuda): the rows add up, follow the precision and the activation
// checkpointing, and the optimizer state equals the CPU optimizer's over the same model (the
// device optimizers keep the same state; tests/cuda/gpu_memory_test.cpp checks every byte count
// against the GPU models' and device optimizers' allocations).
JobConfig cuda_job(const std::string& family, const std::string& flavor, int B, int T,
                   const std::string& precision, const std::string& optimizer = "AdamW",
                   const ConfigOverrides& extra = {}) {
    ConfigOverrides o = {{"model.name", family},
                         {"training.device", "cuda"},
                         {"training.mixed_precision_param", precision}};
    o.insert(o.end(), extra.begin(), extra.end());
    return job(flavor, B, T, optimizer, o);
}

TEST(PlanCuda, RowsAddUpAndFollowThePrecisionAndCheckpointing) {
    for (const auto& [family, flavor] :
         {std::pair{"agpt", "tiny"}, std::pair{"agpt", "moe_tiny"}, std::pair{"gpt2", "gpt2_tiny"}})
        for (const std::string optimizer : {"AdamW", "Muon"}) {
            SCOPED_TRACE(std::string(family) + " " + flavor + " " + optimizer);
            const MemoryPlan bf16 =
                plan_memory(cuda_job(family, flavor, 2, 32, "bfloat16", optimizer), 0, 300);
            const MemoryPlan fp32 =
                plan_memory(cuda_job(family, flavor, 2, 32, "float32", optimizer), 0, 300);
            for (const MemoryPlan* p : {&bf16, &fp32}) {
                EXPECT_TRUE(p->cuda);
                EXPECT_EQ(p->param_bytes, static_cast<std::size_t>(p->local_params) * 4);
                EXPECT_EQ(p->grad_bytes, p->param_bytes);
                EXPECT_EQ(p->runtime_bytes, 0u);
                EXPECT_EQ(p->total_bytes, p->param_bytes + p->grad_bytes + p->bf16_param_bytes +
                                              p->optimizer_bytes + p->activation_bytes +
                                              p->rope_bytes + p->zero_buffer_bytes +
                                              p->temporary_bytes);
            }
            EXPECT_EQ(bf16.bf16_param_bytes, bf16.param_bytes / 2);
            EXPECT_EQ(fp32.bf16_param_bytes, 0u);
            EXPECT_LT(bf16.activation_bytes, fp32.activation_bytes);
            EXPECT_EQ(bf16.optimizer_bytes, fp32.optimizer_bytes);
            // The CPU optimizer over the CPU twin (the device optimizer's host mirror).
            JobConfig cpu_cfg = cuda_job(family, flavor, 2, 32, "float32", optimizer);
            cpu_cfg.training.device = "cpu";
            const auto model = make_language_model(family, flavor, cpu_cfg.model.switches(), 300, 1,
                                                   1, ActivationCheckpoint::none);
            EXPECT_EQ(bf16.local_params, static_cast<long>(model->params().size()));
            EXPECT_EQ(bf16.optimizer_bytes, make_model_optimizer(cpu_cfg, *model)->state_bytes());
        }
    const MemoryPlan none = plan_memory(cuda_job("agpt", "small", 4, 64, "bfloat16"), 0, 258);
    const MemoryPlan full = plan_memory(cuda_job("agpt", "small", 4, 64, "bfloat16", "AdamW",
                                                 {{"activation_checkpoint.mode", "full"}}),
                                        0, 258);
    EXPECT_LT(full.saved_activation_bytes, none.saved_activation_bytes);
    EXPECT_EQ(full.backward_buffer_bytes, none.backward_buffer_bytes);
    EXPECT_EQ(full.param_bytes, none.param_bytes);
}

TEST(PlanCuda, WorkspaceHoldsCublasAndTheDeviceOptimizersBuffers) {
    const std::size_t cublas = std::size_t{32} << 20;
    // (small's heads are not a tensor-core size: no attention scratch)
    const MemoryPlan adamw = plan_memory(cuda_job("agpt", "small", 1, 16, "bfloat16"), 0, 258);
    EXPECT_EQ(adamw.temporary_bytes, cublas);
    const MemoryPlan schedule_free =
        plan_memory(cuda_job("agpt", "small", 1, 16, "bfloat16", "ScheduleFreeAdamW"), 0, 258);
    EXPECT_EQ(schedule_free.temporary_bytes,
              cublas + static_cast<std::size_t>(schedule_free.local_params) * 4);
    // Muon: its own cuBLAS handle, the largest matrix's fp32 update and Newton-Schulz's buffers.
    const MemoryPlan muon =
        plan_memory(cuda_job("agpt", "small", 1, 16, "bfloat16", "Muon"), 0, 258);
    EXPECT_GT(muon.temporary_bytes, 2 * cublas);
    EXPECT_NE(format_plan(muon).find("workspace: cuBLAS workspace, Muon's buffers"),
              std::string::npos);
    const MemoryPlan mano =
        plan_memory(cuda_job("agpt", "small", 1, 16, "bfloat16", "Mano"), 0, 258);
    EXPECT_GT(mano.temporary_bytes, cublas);
    EXPECT_LT(mano.temporary_bytes, muon.temporary_bytes);
}

// bf16 attention on tensor cores takes one fp32 per query row and head in its backward; the split
// backward (AGPT_ATTN_BACKWARD=split) its dQ partial sums besides: 2 splits for GPT-2 at 32 x 1024,
// 8 for llama124m (4 kv heads), each B·T·H·hd floats.
TEST(PlanCuda, WorkspaceHoldsTheAttentionBackwardsScratch) {
    const std::size_t cublas = std::size_t{32} << 20, rows = std::size_t{32} * 1024 * 12;
    const JobConfig gpt2 = cuda_job("gpt2", "124M", 32, 1024, "bfloat16");
    const JobConfig llama = cuda_job("agpt", "llama124m", 32, 1024, "bfloat16");
    const ScopedEnv simple("AGPT_ATTN_KERNEL", nullptr);
    {
        const ScopedEnv off("AGPT_ATTN_BACKWARD", nullptr);
        const MemoryPlan p = plan_memory(gpt2, 0, 50257);
        EXPECT_EQ(p.temporary_bytes, cublas + rows * 4);
        EXPECT_NE(format_plan(p).find("workspace: cuBLAS workspace, attention scratch"),
                  std::string::npos);
        EXPECT_EQ(plan_memory(llama, 0, 32000).temporary_bytes, cublas + rows * 4);
    }
    const ScopedEnv split("AGPT_ATTN_BACKWARD", "split");
    EXPECT_EQ(plan_memory(gpt2, 0, 50257).temporary_bytes, cublas + rows * 4 + 2 * rows * 64 * 4);
    const MemoryPlan p = plan_memory(llama, 0, 32000);
    EXPECT_EQ(p.temporary_bytes, cublas + rows * 4 + 8 * rows * 64 * 4);
    EXPECT_EQ(p.total_bytes, p.param_bytes + p.grad_bytes + p.bf16_param_bytes + p.optimizer_bytes +
                                 p.activation_bytes + p.rope_bytes + p.temporary_bytes);
}

TEST(PlanCuda, ZeroDividesTheOptimizerStateAndAddsItsTransferBuffers) {
    const MemoryPlan plain = plan_memory(cuda_job("agpt", "small", 4, 64, "bfloat16"), 0, 258);
    const MemoryPlan zero = plan_memory(cuda_job("agpt", "small", 4, 64, "bfloat16", "AdamW",
                                                 {{"parallelism.data_parallel_degree", "4"},
                                                  {"parallelism.zero", "1"},
                                                  {"parallelism.bucket_mb", "1"}}),
                                        0, 258);
    EXPECT_EQ(plain.zero_buffer_bytes, 0u);
    EXPECT_EQ(zero.optimizer_bytes, (plain.optimizer_bytes + 3) / 4);
    EXPECT_EQ(zero.param_bytes, plain.param_bytes);
    // A piece of 1 MiB / 4 ranks, five of them (the padded buffer and this rank's own).
    EXPECT_EQ(zero.zero_buffer_bytes, std::size_t{5} * ((1 << 20) / 4 / 4) * 4);
    EXPECT_NE(format_plan(zero).find("ZeRO-1 transfer buffers"), std::string::npos);
}

TEST(PlanCuda, RefusesWhatCudaDoesNotRun) {
    auto message = [](const std::function<JobConfig()>& cfg) {
        try {
            plan_memory(cfg(), 0, 300);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    EXPECT_NE(message([] {
                  return cuda_job("gpt2", "gpt2_tiny", 1, 16, "bfloat16", "AdamW",
                                  {{"activation_checkpoint.mode", "full"}});
              }).find("activation_checkpoint.mode = 'full'"),
              std::string::npos);
    EXPECT_NE(message([] {
                  return cuda_job("gpt2", "gpt2_tiny", 1, 16, "bfloat16", "AdamW",
                                  {{"parallelism.tensor_parallel_degree", "2"}});
              }).find("tensor_parallel_degree = 2: tensor parallelism needs the agpt family"),
              std::string::npos);
    EXPECT_NE(message([] {
                  return cuda_job("agpt", "moe_tiny", 1, 16, "bfloat16", "AdamW",
                                  {{"parallelism.tensor_parallel_degree", "2"}});
              }).find("not MLA/MoE"),
              std::string::npos);
    EXPECT_NE(message([] {
                  return cuda_job("agpt", "small", 1, 16, "bfloat16", "AdamW",
                                  {{"parallelism.tensor_parallel_degree", "4"}});
              }).find("tensor_parallel_degree = 4 does not divide the model's n_heads 6"),
              std::string::npos);
    EXPECT_NE(message([] {
                  return cuda_job("gpt2", "gpt2_tiny", 1, 256, "bfloat16");
              }).find("exceeds the context of gpt2 flavor gpt2_tiny"),
              std::string::npos);
    EXPECT_NE(message([] {
                  JobConfig cfg = cuda_job("gpt2", "gpt2_tiny", 1, 16, "bfloat16");
                  cfg.training.device = "cpu";  // the CPU plan stays the agpt family's
                  return cfg;
              }).find("model.name = gpt2"),
              std::string::npos);
}

// cuda jobs under tensor parallelism: one GPU holds rank 0's shard (the CPU plan's split), its
// per-head and per-FFN-unit activations, the vocabulary-parallel head's chunk over its 501 of
// 1001 rows and, in bf16, the fp32 staging of the all-reduces (one (N, dim) tensor).
TEST(PlanCuda, TensorParallelRowsFollowRankZerosShard) {
    const int B = 2, T = 64;
    const std::size_t N = B * T;
    for (const std::string precision : {"bfloat16", "float32"})
        for (const std::string mode : {"none", "full"}) {
            SCOPED_TRACE(precision + " " + mode);
            const ConfigOverrides m = {{"activation_checkpoint.mode", mode}};
            ConfigOverrides m2 = m;
            m2.push_back({"parallelism.tensor_parallel_degree", "2"});
            const MemoryPlan one =
                plan_memory(cuda_job("agpt", "debugmodel", B, T, precision, "AdamW", m), 0, 1001);
            const MemoryPlan two =
                plan_memory(cuda_job("agpt", "debugmodel", B, T, precision, "AdamW", m2), 0, 1001);
            const TensorParallelShard s = tensor_parallel_shard(two.args, 2, 0);
            EXPECT_EQ(two.tensor_parallel_degree, 2);
            EXPECT_EQ(two.params, one.params);
            EXPECT_EQ(two.local_params, s.params());
            EXPECT_EQ(two.param_bytes, static_cast<std::size_t>(s.params()) * 4);
            EXPECT_EQ(two.grad_bytes, two.param_bytes);
            EXPECT_EQ(two.bf16_param_bytes, precision == "bfloat16" ? two.param_bytes / 2 : 0);
            EXPECT_EQ(two.optimizer_bytes, static_cast<std::size_t>(s.params()) * 8 + 8);  // AdamW
            const ModelArgs& a = one.args;
            const std::size_t es = precision == "bfloat16" ? 2 : 4;
            // Backward: residual and norm gradients whole; the larger of the FFN's (gate, h13)
            // and the attention's (output, qkv) temporaries halved.
            const std::size_t split_backward =
                std::max<std::size_t>(a.ffn_hidden() + a.ffn_in_dim(), a.dim + a.qkv_dim());
            EXPECT_EQ(two.backward_buffer_bytes, N * (2 * a.dim + split_backward / 2) * es);
            EXPECT_LT(two.saved_activation_bytes, one.saved_activation_bytes);
            // The head: fp32 logits of the chunk (all N rows) over 501 columns (and their bf16
            // copy), three fp32 values per row.
            const std::size_t logits = N * 501 * 4 + (precision == "bfloat16" ? N * 501 * 2 : 0);
            EXPECT_EQ(two.head_chunk_bytes, logits + 3 * N * 4);
            EXPECT_EQ(two.tp_stage_bytes, precision == "bfloat16" ? N * a.dim * 4 : 0);
            EXPECT_EQ(one.tp_stage_bytes, 0u);
            EXPECT_EQ(two.activation_bytes, two.saved_activation_bytes + two.backward_buffer_bytes +
                                                two.head_chunk_bytes + two.batch_bytes +
                                                two.tp_stage_bytes);
            EXPECT_EQ(two.total_bytes, two.param_bytes + two.grad_bytes + two.bf16_param_bytes +
                                           two.optimizer_bytes + two.activation_bytes +
                                           two.rope_bytes + two.temporary_bytes);
        }
    // The table and the JSON show the degree, the shard and the staging row.
    const MemoryPlan tp = plan_memory(cuda_job("agpt", "debugmodel", B, T, "bfloat16", "AdamW",
                                               {{"parallelism.tensor_parallel_degree", "4"}}),
                                      0, 1001);
    const std::string text = format_plan(tp);
    EXPECT_NE(text.find(fmt::format("tensor parallel 4 ({} parameters per rank)", tp.local_params)),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("fp32 staging of the TP all-reduces"), std::string::npos) << text;
    const nlohmann::json j = plan_json(tp);
    EXPECT_EQ(j["tensor_parallel_degree"], 4);
    EXPECT_EQ(j["bytes"]["tp_stage"].get<std::size_t>(), tp.tp_stage_bytes);
    EXPECT_EQ(j["local_params"].get<long>(), tensor_parallel_shard(tp.args, 4, 0).params());
}

TEST(PlanCuda, TableAndJsonShowTheGpuRowsAndTheVerdict) {
    const JobConfig cfg = cuda_job("gpt2", "124M", 32, 1024, "bfloat16");
    const MemoryPlan fits = plan_memory(cfg, 80, 50257);
    const MemoryPlan too_small = plan_memory(cfg, 8, 50257);
    EXPECT_TRUE(fits.fits);
    EXPECT_FALSE(too_small.fits);
    EXPECT_EQ(fits.params, 124475904L);  // wte padded to 50304 rows
    const std::string text = format_plan(fits);
    for (const char* row :
         {"memory per GPU (bf16 params + fp32 master, cuda trainer)", "parameters (fp32 master)",
          "bf16 copy of the parameters", "optimizer state (fp32)", "LM-head logits chunk",
          "workspace: cuBLAS workspace", "not counted: the CUDA context", "fits in 80 GiB"})
        EXPECT_NE(text.find(row), std::string::npos) << row << "\n" << text;
    EXPECT_NE(format_plan(too_small).find("does NOT fit in 8 GiB"), std::string::npos);
    const nlohmann::json j = plan_json(fits);
    EXPECT_EQ(j["device"], "cuda");
    EXPECT_EQ(j["model"], "gpt2");
    EXPECT_EQ(j["precision"], "bfloat16");
    EXPECT_EQ(j["bytes"]["bf16_parameters"].get<std::size_t>(), fits.bf16_param_bytes);
    EXPECT_EQ(j["bytes"]["workspace"].get<std::size_t>(), fits.temporary_bytes);
    EXPECT_EQ(j["bytes"]["total"].get<std::size_t>(), fits.total_bytes);
    EXPECT_EQ(j["fits"], true);
    const MemoryPlan fp32 = plan_memory(cuda_job("agpt", "tiny", 1, 16, "float32"), 0, 300);
    EXPECT_NE(format_plan(fp32).find("memory per GPU (fp32, cuda trainer)"), std::string::npos);
    EXPECT_EQ(format_plan(fp32).find("bf16 copy"), std::string::npos);
    // The CPU plan has none of it.
    const MemoryPlan cpu = plan_memory(job("tiny", 1, 16), 0, 300);
    EXPECT_FALSE(cpu.cuda);
    EXPECT_FALSE(plan_json(cpu).contains("device"));
}

// The child half of the RSS check: trains the job named by AGPT_PLAN_RSS_JOB ("flavor B T") and
// writes its peak resident set in bytes to AGPT_PLAN_RSS_OUT. Skipped unless started that way.
TEST(PlanRssChild, Train) {
    const char* spec = std::getenv("AGPT_PLAN_RSS_JOB");
    const char* out = std::getenv("AGPT_PLAN_RSS_OUT");
    if (!spec || !out) GTEST_SKIP() << "run by Plan.TotalWithin15PercentOfPeakRss";
    std::istringstream in(spec);
    std::string flavor, dump, mode;
    int B = 0, T = 0;
    in >> flavor >> B >> T >> mode >> dump;
    const JobConfig cfg = load_job_config("", {{"job.dump_folder", dump},
                                               {"job.name", flavor + "_" + mode},
                                               {"model.flavor", flavor},
                                               {"training.local_batch_size", std::to_string(B)},
                                               {"training.seq_len", std::to_string(T)},
                                               {"activation_checkpoint.mode", mode},
                                               {"training.steps", "3"},
                                               {"training.threads", "2"},
                                               {"validation.enable", "false"},
                                               {"sample.max_new_tokens", "0"}});
    train(cfg, nullptr);
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::ofstream(out) << static_cast<long>(usage.ru_maxrss) * 1024;
}

// A fresh process per run (this binary, running only PlanRssChild.Train), so that no other
// test's allocations count.
TEST(Plan, TotalWithin15PercentOfPeakRss) {
#if defined(__SANITIZE_ADDRESS__)
    GTEST_SKIP() << "AddressSanitizer's shadow memory and redzones are not in the plan";
#endif
    const fs::path self = fs::read_symlink("/proc/self/exe");
    const fs::path dir = fs::temp_directory_path() / "agpt_plan_rss_test";
    fs::remove_all(dir);
    fs::create_directories(dir);
    struct Case {
        std::string flavor;
        int B, T;
        std::string mode;
    };
    for (const Case& c : std::vector<Case>{{"tiny", 8, 128, "none"},
                                           {"small", 8, 256, "none"},
                                           {"small", 8, 256, "full"},
                                           {"small_kitchen_sink", 4, 256, "none"}}) {
        const fs::path out = dir / (c.flavor + c.mode + ".rss");
        const std::string cmd = "AGPT_PLAN_RSS_JOB='" + c.flavor + " " + std::to_string(c.B) + " " +
                                std::to_string(c.T) + " " + c.mode + " " + (dir / "runs").string() +
                                "' AGPT_PLAN_RSS_OUT='" + out.string() + "' '" + self.string() +
                                "' --gtest_filter=PlanRssChild.Train > '" +
                                (dir / (c.flavor + c.mode + ".log")).string() + "' 2>&1";
        ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
        long rss = 0;
        std::ifstream(out) >> rss;
        ASSERT_GT(rss, 0) << c.flavor;
        const MemoryPlan plan =
            plan_memory(job(c.flavor, c.B, c.T, "AdamW", {{"activation_checkpoint.mode", c.mode}}));
        const double ratio = static_cast<double>(plan.total_bytes) / static_cast<double>(rss);
        std::printf("plan %s %dx%d %s: estimate %.1f MiB, peak RSS %.1f MiB, ratio %.3f\n",
                    c.flavor.c_str(), c.B, c.T, c.mode.c_str(),
                    static_cast<double>(plan.total_bytes) / (1 << 20),
                    static_cast<double>(rss) / (1 << 20), ratio);
        EXPECT_NEAR(ratio, 1.0, 0.15) << c.flavor << " " << c.mode;
    }
    fs::remove_all(dir);
}

}  // namespace
}  // namespace agpt
