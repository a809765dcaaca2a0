#include "tools/plan.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "data/tokenizer.h"
#include "kernels/cpu/cross_entropy.h"
#include "model/model_zoo.h"
#include "model/transformer.h"
#include "optim/optimizer.h"

namespace agpt {

namespace {

// The trainer's GEMM probe (measure_gemm_peak_tflops' default n = 2048): A, B and C in fp32.
constexpr std::size_t kGemmProbeBytes = std::size_t{3} * 2048 * 2048 * sizeof(float);

// The parameter tensors of the agpt model as Transformer::build_views lays them out: shape
// numels split into hidden matrices (attention, FFN: what Muon and Mano take) and the rest.
struct ParamSplit {
    long hidden = 0, rest = 0, largest_hidden = 0;
    long untrained = 0;  // MoE expert biases: set by the balancing rule, in no optimizer
};

// MLA/MoE models: the matrices are MLA's projections, the dense layers' FFN and the shared
// experts; the router and the (E, ·, ·) routed experts go with the rest (optim_params_from and
// is_hidden_matrix); the expert biases belong to no optimizer.
ParamSplit split_mla_moe_params(const ModelArgs& a) {
    const long D = a.dim, H = a.n_heads, QR = a.q_lora_rank, KVR = a.kv_lora_rank,
               P = a.qk_nope_head_dim + a.qk_rope_head_dim, F = a.ffn_hidden(),
               FS = static_cast<long>(a.n_shared_experts) * a.moe_hidden, V = a.vocab_size;
    ParamSplit s;
    auto matrix = [&](long n, long layers) {
        s.hidden += n * layers;
        if (layers > 0) s.largest_hidden = std::max(s.largest_hidden, n);
    };
    const long L = a.n_layers, moe = a.n_moe_layers(), dense = L - moe;
    if (QR > 0) {
        matrix(QR * D, L);
        matrix(H * P * QR, L);
    } else {
        matrix(H * P * D, L);
    }
    matrix((KVR + a.qk_rope_head_dim) * D, L);
    matrix(H * (a.qk_nope_head_dim + a.v_head_dim) * KVR, L);
    matrix(D * H * a.v_head_dim, L);
    for (int m = 0; m < 3; m++) matrix(F * D, dense);
    for (int m = 0; m < 3 && FS > 0; m++) matrix(FS * D, moe);
    s.rest = L * (2 * D + QR + KVR) +
             moe * (static_cast<long>(a.n_experts) * D + a.n_experts * a.expert_params()) +
             2 * V * D + D;
    s.untrained = moe * a.n_experts;
    return s;
}

ParamSplit split_params(const ModelArgs& a) {
    if (a.mla || a.is_moe()) return split_mla_moe_params(a);
    const long D = a.dim, hd = a.head_dim(), F = a.ffn_hidden(), V = a.vocab_size;
    const long H = a.n_heads, KV = a.n_kv_heads;
    ParamSplit s;
    const long mats[] = {H * hd * D, KV * hd * D, KV * hd * D,
                         D * H * hd, F * D,       a.ffn == FfnType::swiglu ? F * D : 0,
                         D * F};
    long per_layer_hidden = 0;
    for (long m : mats) {
        per_layer_hidden += m;
        s.largest_hidden = std::max(s.largest_hidden, m);
    }
    const long per_layer_rest = 2 * D + (a.qk_norm ? 2 * hd : 0);
    s.hidden = per_layer_hidden * a.n_layers;
    s.rest = per_layer_rest * a.n_layers + 2 * V * D + D;  // embedding, head, final norm
    return s;
}

// The sizes, in floats, of Transformer's acts_, dacts_ and scratch_ (transformer.cpp: the
// layer_layout, the constructor and head_chunk), for N = batch · seq_len rows, on one
// tensor-parallel rank: the per-head and per-FFN-unit tensors hold that rank's share, the
// residual-stream ones (x, norms, rstd, h) stay whole, the LM-head chunk holds its vocabulary rows.
struct ArenaFloats {
    std::size_t acts = 0, dacts = 0, scratch = 0;
};

ArenaFloats arena_floats(const ModelArgs& a, std::size_t N, ActivationCheckpoint checkpoint,
                         const TensorParallelShard& tp) {
    // MLA keeps its attention buffers itself (mla_moe_bytes).
    const std::size_t gqa = a.mla ? 0 : 1;
    const std::size_t hd = a.head_dim(), H = tp.heads, KV = tp.kv_heads;
    const std::size_t D = a.dim, F = tp.ffn_hidden, Q = gqa * (H + 2 * KV) * hd, A = gqa * H * hd,
                      FI = a.ffn == FfnType::swiglu ? 2 * F : F;
    const std::size_t qk_heads = a.qk_norm && !a.mla ? H + KV : 0;
    const std::size_t QK = qk_heads * hd;
    // Per layer: attention norm and rstd, qkv, (QK-norm: raw q|k and rstd), attention output
    // and lse, h, FFN norm and rstd, the first FFN projection, the gate; and its input x.
    const std::size_t working = N * D + N + N * Q + N * QK + N * qk_heads + N * A + gqa * N * H +
                                N * D + N * D + N + N * FI + N * F;
    ArenaFloats r;
    const std::size_t L = a.n_layers;
    // full: every layer's input and the stream after the last layer, one working set, the final
    // norm and its rstd. none: L × (input + working set), the last stream, final norm and rstd.
    r.acts = checkpoint == ActivationCheckpoint::full ? (L + 1) * N * D + working + N * D + N
                                                      : (N * D + working) * L + 2 * N * D + N;
    r.dacts = N * D + N * D + N * F + N * FI + N * A + N * Q + N * QK;
    const int V = tp.vocab_rows, n = static_cast<int>(N);
    const int chunk = std::clamp((1 << 24) / std::max(V, 1), 16, std::max(n, 16));
    r.scratch = static_cast<std::size_t>(cpu::lm_head_scratch_size(chunk, V));
    return r;
}

// The buffers the MLA and MoE layers hold themselves (Mla::bytes, MoeFfn::bytes): one per layer,
// or one shared by all layers under activation checkpointing.
std::size_t mla_moe_bytes(const ModelArgs& a, int batch, int seq_len,
                          ActivationCheckpoint checkpoint) {
    const bool full = checkpoint == ActivationCheckpoint::full;
    std::size_t bytes = 0;
    if (a.mla)
        bytes += (full ? 1 : a.n_layers) * Mla<float>::bytes_for(mla_shape_of(a), batch, seq_len);
    if (a.is_moe())
        bytes += (full ? 1 : a.n_moe_layers()) *
                 MoeFfn<float>::bytes_for(moe_shape_of(a), batch * seq_len);
    return bytes;
}

const char* checkpoint_mode_name(ActivationCheckpoint c) {
    return c == ActivationCheckpoint::full ? "full" : "none";
}

std::string bytes_text(std::size_t b) {
    const double x = static_cast<double>(b);
    if (x >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", x / (1024.0 * 1024 * 1024));
    if (x >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", x / (1024.0 * 1024));
    return fmt::format("{:.1f} KiB", x / 1024.0);
}

}  // namespace

TensorParallelShard tensor_parallel_shard(const ModelArgs& a, int degree, int rank) {
    if (degree < 1 || rank < 0 || rank >= degree)
        fail("plan: tensor-parallel rank {} of degree {} does not exist", rank, degree);
    if (degree > 1 && (a.mla || a.is_moe()))
        fail(
            "plan: parallelism.tensor_parallel_degree = {}: tensor parallelism splits the dense "
            "agpt layers (GQA attention, dense FFN), not MLA/MoE ones",
            degree);
    const int F = a.ffn_hidden();
    for (const auto& [what, n] :
         {std::pair{"n_heads", a.n_heads}, std::pair{"n_kv_heads", a.n_kv_heads},
          std::pair{"ffn hidden", F}})
        if (n % degree != 0)
            fail("plan: parallelism.tensor_parallel_degree = {} does not divide the model's {} {}",
                 degree, what, n);
    TensorParallelShard s;
    s.degree = degree;
    s.rank = rank;
    s.heads = a.n_heads / degree;
    s.kv_heads = a.n_kv_heads / degree;
    s.ffn_hidden = F / degree;
    const int V = a.vocab_size, base = V / degree, extra = V % degree;
    s.vocab_rows = base + (rank < extra ? 1 : 0);
    s.vocab_begin = rank * base + std::min(rank, extra);
    if (a.mla || a.is_moe()) return s;  // degree 1: plan_memory splits these itself
    const long D = a.dim, hd = a.head_dim(), H = s.heads, KV = s.kv_heads, FL = s.ffn_hidden;
    // Column-parallel wq, wk, wv, w1, w3; row-parallel wo, w2.
    const long per_layer_hidden = H * hd * D + 2 * KV * hd * D + D * H * hd +
                                  FL * D * (a.ffn == FfnType::swiglu ? 2 : 1) + D * FL;
    const long per_layer_rest = 2 * D + (a.qk_norm ? 2 * hd : 0);  // replicated norms
    s.hidden_params = per_layer_hidden * a.n_layers;
    s.rest_params = per_layer_rest * a.n_layers + 2L * s.vocab_rows * D + D;
    return s;
}

std::vector<OptimizerStatePart> optimizer_state_parts(const std::string& optimizer, long hidden,
                                                      long rest) {
    const std::string name = optimizer_info(optimizer).name;
    const long all = hidden + rest;
    const auto floats = [](long n, int per) { return static_cast<std::size_t>(n) * per * 4; };
    // What each optimizer's state_tensors() lists: per-parameter fp32 buffers and its 8-byte
    // scalars (src/optim/*.cpp).
    if (name == "Muon" || name == "Mano")  // momentum of hidden matrices; AdamW m, v for the rest
        return {{name, hidden, floats(hidden, 1) + 8}, {"AdamW", rest, floats(rest, 2) + 8}};
    if (name == "AdamW") return {{name, all, floats(all, 2) + 8}};
    if (name == "SophiaG") return {{name, all, floats(all, 2) + 8}};  // exp_avg, hessian
    if (name == "SPAM") return {{name, all, floats(all, 2) + 16}};    // two step counters
    if (name == "Lion") return {{name, all, floats(all, 1) + 8}};
    if (name == "ScheduleFreeAdamW") return {{name, all, floats(all, 2) + 32}};  // z, v; 4 scalars
    if (name == "AdEMAMix") return {{name, all, floats(all, 3) + 8}};  // fast, slow, exp_avg_sq
    fail("plan: no memory model for optimizer '{}'", name);
}

MemoryPlan plan_memory(const JobConfig& cfg, double device_memory_gib, int vocab_size) {
    validate_job_config(cfg);
    if (!(device_memory_gib >= 0) || !std::isfinite(device_memory_gib))
        fail("plan: --device-memory-gib {} must be a positive number of GiB", device_memory_gib);
    if (cfg.model.name != "agpt")
        fail("plan: model.name = {}: only the agpt family has a memory model (its arena layout)",
             cfg.model.name);
    MemoryPlan p;
    p.flavor = cfg.model.flavor;
    p.args = resolve_model_args(cfg.model.flavor, cfg.model.switches());
    p.args.vocab_size = vocab_size > 0
                            ? vocab_size
                            : Tokenizer::load(cfg.model.tokenizer).vocab_size();  // as the trainer
    const ModelArgs& a = p.args;
    if (!a.mla &&
        (a.dim % a.n_heads != 0 || a.n_heads % a.n_kv_heads != 0 || a.head_dim() % 2 != 0))
        fail("plan: flavor {} has an impossible head layout (dim {}, heads {}/{})", p.flavor, a.dim,
             a.n_heads, a.n_kv_heads);
    p.batch = cfg.training.local_batch_size;
    p.seq_len = cfg.training.seq_len;
    p.params = a.num_params();
    p.active_params = a.num_active_params();
    p.flops_per_token = a.flops_per_token(p.seq_len);
    p.activation_checkpoint = activation_checkpoint_from(cfg.activation_checkpoint.mode);
    p.tensor_parallel_degree = cfg.parallelism.tensor_parallel_degree;
    p.data_parallel_degree = std::max(cfg.parallelism.data_parallel_degree, 1);
    p.zero = cfg.parallelism.zero;

    ParamSplit split = split_params(a);
    if (split.hidden + split.rest + split.untrained != p.params)
        fail("plan: internal error: parameter split {} + {} + {} != {}", split.hidden, split.rest,
             split.untrained, p.params);
    const TensorParallelShard tp = tensor_parallel_shard(a, p.tensor_parallel_degree, 0);
    if (p.tensor_parallel_degree > 1) {
        split.hidden = tp.hidden_params;
        split.rest = tp.rest_params;
        split.largest_hidden =
            std::max(split.largest_hidden / p.tensor_parallel_degree, 1L);  // one matrix's shard
    }
    p.local_params = split.hidden + split.rest + split.untrained;
    p.param_bytes = p.grad_bytes = static_cast<std::size_t>(p.local_params) * sizeof(float);
    p.optimizer = optimizer_info(cfg.optimizer.name).name;
    p.optimizer_parts = optimizer_state_parts(p.optimizer, split.hidden, split.rest);
    if (p.zero == 1)
        for (auto& part : p.optimizer_parts) {
            const std::size_t d = static_cast<std::size_t>(p.data_parallel_degree);
            part.bytes = (part.bytes + d - 1) / d;
            part.params = (part.params + p.data_parallel_degree - 1) / p.data_parallel_degree;
        }
    for (const auto& part : p.optimizer_parts) p.optimizer_bytes += part.bytes;

    const std::size_t N = static_cast<std::size_t>(p.batch) * p.seq_len;
    const ArenaFloats arena = arena_floats(a, N, p.activation_checkpoint, tp);
    p.saved_activation_bytes =
        arena.acts * sizeof(float) + mla_moe_bytes(a, p.batch, p.seq_len, p.activation_checkpoint);
    p.backward_buffer_bytes = arena.dacts * sizeof(float);
    p.head_chunk_bytes = arena.scratch * sizeof(float);
    p.activation_bytes = p.saved_activation_bytes + p.backward_buffer_bytes + p.head_chunk_bytes;
    p.rope_bytes = 2 * static_cast<std::size_t>(p.seq_len) * (a.head_dim() / 2) * sizeof(float);

    p.temporary_bytes = kGemmProbeBytes;
    p.temporary_what = "fp32 GEMM probe (3 x 2048^2)";
    if (p.optimizer == "Muon" || p.optimizer == "Mano") {
        // One hidden matrix at a time: its fp32 update, an fp64 copy and Newton-Schulz's fp64
        // products (about three more of its size; an estimate).
        const std::size_t ns = static_cast<std::size_t>(split.largest_hidden) * (4 + 4 * 8);
        if (ns > p.temporary_bytes) {
            p.temporary_bytes = ns;
            p.temporary_what = p.optimizer + " update of the largest matrix (estimate)";
        }
    }
    p.runtime_bytes = kPlanRuntimeBytes;
    p.total_bytes = p.param_bytes + p.grad_bytes + p.optimizer_bytes + p.activation_bytes +
                    p.rope_bytes + p.temporary_bytes + p.runtime_bytes;
    p.device_memory_gib = device_memory_gib;
    p.fits = device_memory_gib <= 0 ||
             static_cast<double>(p.total_bytes) <= device_memory_gib * 1024.0 * 1024 * 1024;
    return p;
}

std::string format_plan(const MemoryPlan& p) {
    const ModelArgs& a = p.args;
    std::string s = fmt::format(
        "model agpt/{}: dim {} layers {} heads {}/{} ffn {} vocab {} (model.tokenizer) ({})\n"
        "parameters       {} ({:.3f}B), active {}\n"
        "FLOPs per token  {:.4g} (training, seq_len {})\n"
        "batch {} x {} = {} tokens per micro-batch | optimizer {}\n"
        "activation checkpointing {} | tensor parallel {} ({} parameters per rank) | data "
        "parallel {}, ZeRO-{}\n\n"
        "memory per device (fp32, CPU trainer)\n",
        p.flavor, a.dim, a.n_layers, a.n_heads, a.n_kv_heads, a.ffn_hidden(), a.vocab_size,
        a.describe_switches(), p.params, static_cast<double>(p.params) / 1e9, p.active_params,
        p.flops_per_token, p.seq_len, p.batch, p.seq_len, static_cast<long>(p.batch) * p.seq_len,
        p.optimizer, checkpoint_mode_name(p.activation_checkpoint), p.tensor_parallel_degree,
        p.local_params, p.data_parallel_degree, p.zero);
    const auto row = [&](const std::string& what, std::size_t b) {
        s += fmt::format("  {:<52} {:>11}\n", what, bytes_text(b));
    };
    row("parameters", p.param_bytes);
    row("gradients", p.grad_bytes);
    row("optimizer state", p.optimizer_bytes);
    for (const auto& part : p.optimizer_parts)
        row(fmt::format("  {} ({} params)", part.optimizer, part.params), part.bytes);
    row("activations", p.activation_bytes);
    row("  saved for backward", p.saved_activation_bytes);
    row("  backward buffers", p.backward_buffer_bytes);
    row("  LM-head logits chunk", p.head_chunk_bytes);
    row("RoPE tables", p.rope_bytes);
    row("largest temporary: " + p.temporary_what, p.temporary_bytes);
    row("runtime (process baseline)", p.runtime_bytes);
    row("total", p.total_bytes);
    if (p.device_memory_gib > 0)
        s += fmt::format("{} in {:g} GiB ({:.0f}% of it)\n", p.fits ? "fits" : "does NOT fit",
                         p.device_memory_gib,
                         100.0 * static_cast<double>(p.total_bytes) /
                             (p.device_memory_gib * 1024.0 * 1024 * 1024));
    return s;
}

nlohmann::json plan_json(const MemoryPlan& p) {
    nlohmann::json parts = nlohmann::json::array();
    for (const auto& part : p.optimizer_parts)
        parts.push_back(
            {{"optimizer", part.optimizer}, {"params", part.params}, {"bytes", part.bytes}});
    nlohmann::json j = {{"flavor", p.flavor},
                        {"vocab_size", p.args.vocab_size},
                        {"local_batch_size", p.batch},
                        {"seq_len", p.seq_len},
                        {"params", p.params},
                        {"active_params", p.active_params},
                        {"flops_per_token", p.flops_per_token},
                        {"optimizer", p.optimizer},
                        {"optimizer_parts", parts},
                        {"activation_checkpoint", checkpoint_mode_name(p.activation_checkpoint)},
                        {"tensor_parallel_degree", p.tensor_parallel_degree},
                        {"data_parallel_degree", p.data_parallel_degree},
                        {"zero", p.zero},
                        {"local_params", p.local_params},
                        {"bytes",
                         {{"parameters", p.param_bytes},
                          {"gradients", p.grad_bytes},
                          {"optimizer_state", p.optimizer_bytes},
                          {"activations", p.activation_bytes},
                          {"saved_activations", p.saved_activation_bytes},
                          {"backward_buffers", p.backward_buffer_bytes},
                          {"head_chunk", p.head_chunk_bytes},
                          {"rope_tables", p.rope_bytes},
                          {"largest_temporary", p.temporary_bytes},
                          {"runtime", p.runtime_bytes},
                          {"total", p.total_bytes}}},
                        {"largest_temporary_what", p.temporary_what},
                        {"total_gib", static_cast<double>(p.total_bytes) / (1024.0 * 1024 * 1024)}};
    if (p.device_memory_gib > 0) {
        j["device_memory_gib"] = p.device_memory_gib;
        j["fits"] = p.fits;
    }
    return j;
}

}  // namespace agpt
