#include "tools/plan.h"

#include <algorithm>
#include <cmath>
#include <variant>

#include <fmt/format.h>

#include "core/error.h"
#include "data/tokenizer.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cuda/attention_plan.h"
#include "model/gpt2.h"
#include "model/gpu/gpu_memory.h"
#include "model/model_zoo.h"
#include "model/transformer.h"
#include "optim/cuda_optimizer.h"
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

// ZeRO-1: each data-parallel rank keeps the optimizer state of its share of the parameters.
void divide_over_zero_ranks(MemoryPlan& p) {
    if (p.zero != 1) return;
    const std::size_t d = static_cast<std::size_t>(p.data_parallel_degree);
    for (auto& part : p.optimizer_parts) {
        part.bytes = (part.bytes + d - 1) / d;
        part.params = (part.params + p.data_parallel_degree - 1) / p.data_parallel_degree;
    }
}

// cuBLAS's workspace per handle (cuda::Blas's default): the model's, and Muon's own.
constexpr std::size_t kCublasWorkspaceBytes = std::size_t{32} << 20;

// is_hidden_matrix (optim/optimizer.h) on a view: what Muon and Mano take.
bool is_hidden_view(const ParamView& v) {
    return v.shape.size() == 2 && (v.role == "attention" || v.role == "ffn");
}

// The parameters of a GPU model as its device optimizer splits them (optim_params_from and
// is_hidden_matrix): hidden matrices, the rest, and the expert biases no optimizer trains.
ParamSplit split_views(const std::vector<ParamView>& views) {
    ParamSplit s;
    for (const ParamView& v : views) {
        const long n = static_cast<long>(v.numel());
        if (v.role == "expert_bias")
            s.untrained += n;
        else if (is_hidden_view(v))
            s.hidden += n;
        else
            s.rest += n;
    }
    return s;
}

// The device optimizer's buffers besides its state (optim/cuda_optimizer.cpp): Muon's cuBLAS
// handle and workspace, the fp32 update of its largest matrix and Newton-Schulz's scratch for it
// (kernels/cuda/newton_schulz.cu: two copies of the matrix and two r×r Gram products in the
// GEMMs' precision, r the shorter side); Mano's per-matrix partial sums (three doubles per column
// and 64-row block); ScheduleFreeAdamW's fp32 stash of the parameters it updates.
std::size_t optimizer_device_bytes(const std::string& optimizer,
                                   const std::vector<ParamView>& views, long trained,
                                   bool ns_bf16) {
    if (optimizer == "ScheduleFreeAdamW") return static_cast<std::size_t>(trained) * sizeof(float);
    if (optimizer != "Muon" && optimizer != "Mano") return 0;
    std::size_t largest = 0, scratch = 0;
    const std::size_t es = ns_bf16 ? 2 : 4;
    for (const ParamView& v : views)
        if (is_hidden_view(v)) {
            const std::size_t n = v.numel(), R = static_cast<std::size_t>(v.shape[0]),
                              C = static_cast<std::size_t>(v.shape[1]), r = std::min(R, C);
            largest = std::max(largest, n);
            scratch = std::max(scratch, optimizer == "Muon" ? 2 * n * es + 2 * r * r * es
                                                            : (R + 63) / 64 * 3 * C * 8 + C * 8);
        }
    return optimizer == "Muon" ? kCublasWorkspaceBytes + largest * sizeof(float) + scratch
                               : scratch;
}

// The cuda trainer's model for cfg (make_cuda_model's): its parameter views, device bytes and
// its attention backward's kernels (whose stream scratch the step allocates per layer).
struct CudaModelPlan {
    std::vector<ParamView> views;
    GpuModelBytes bytes;
    cuda::AttentionBackwardPlan attention;
};

CudaModelPlan plan_cuda_model(MemoryPlan& p, const JobConfig& cfg, int vocab_size) {
    const GpuPrecision precision =
        p.precision == "float32" ? GpuPrecision::fp32 : GpuPrecision::bf16;
    const bool bf16 = precision == GpuPrecision::bf16;
    CudaModelPlan m;
    if (cfg.model.name == "gpt2") {
        if (p.tensor_parallel_degree > 1)
            fail(
                "plan: parallelism.tensor_parallel_degree = {}: tensor parallelism needs the agpt "
                "family, not gpt2",
                p.tensor_parallel_degree);
        const Gpt2Flavor* f = find_gpt2_flavor(cfg.model.flavor);
        if (f == nullptr) fail("plan: model gpt2: unknown flavor '{}'", cfg.model.flavor);
        Gpt2Args g = f->args;
        g.vocab_size = vocab_size;
        g.padded_vocab_size = 0;  // as make_language_model pads it
        p.args = ModelArgs{};
        p.args.dim = g.dim;
        p.args.n_layers = g.n_layers;
        p.args.n_heads = p.args.n_kv_heads = g.n_heads;
        p.args.vocab_size = g.vocab_size;
        p.params = p.active_params = g.num_params();
        p.flops_per_token = g.flops_per_token(p.seq_len);
        m.views = gpt2_param_views(g);
        m.bytes = gpt2_gpu_bytes(g, p.batch, p.seq_len, precision);
        m.attention = cuda::attention_backward_plan(p.batch, p.seq_len, g.n_heads, g.n_heads,
                                                    g.dim / g.n_heads, bf16);
    } else {
        // Tensor-parallel rank 0, as the CPU plan: it holds the longest vocabulary range.
        tensor_parallel_shard(p.args, p.tensor_parallel_degree, 0);  // refuses what cannot split
        TensorParallel tp;
        tp.degree = p.tensor_parallel_degree;
        m.views = transformer_layout(p.args, tp, p.expert_parallel_degree).views;
        m.bytes = transformer_gpu_bytes(p.args, p.batch, p.seq_len, precision,
                                        p.activation_checkpoint, p.expert_parallel_degree, tp);
        const gpu_detail::Widths w = gpu_detail::widths(p.args, tp.degree);
        const MlaShape mla = p.args.mla ? mla_shape_of(p.args) : MlaShape{};
        m.attention =
            p.args.mla
                ? cuda::attention_backward_plan(p.batch, p.seq_len, w.heads, w.heads,
                                                std::max(mla.qk_head_dim(), mla.v_head_dim), bf16)
                : cuda::attention_backward_plan(p.batch, p.seq_len, w.heads, w.kv_heads,
                                                p.args.head_dim(), bf16);
    }
    return m;
}

MemoryPlan finish(MemoryPlan& p, double device_memory_gib) {
    p.device_memory_gib = device_memory_gib;
    p.fits = device_memory_gib <= 0 ||
             static_cast<double>(p.total_bytes) <= device_memory_gib * 1024.0 * 1024 * 1024;
    return p;
}

// The GPU side of plan_memory (training.device = cuda).
void plan_cuda_memory(MemoryPlan& p, const JobConfig& cfg, int vocab_size) {
    check_cuda_optimizer(cfg.optimizer.spec());
    p.cuda = true;
    p.precision = cfg.training.mixed_precision_param == "float32" ? "float32" : "bfloat16";
    p.expert_parallel_degree = std::max(cfg.parallelism.expert_parallel_degree, 1);
    const CudaModelPlan m = plan_cuda_model(p, cfg, vocab_size);
    const ParamSplit split = split_views(m.views);
    p.local_params = split.hidden + split.rest + split.untrained;
    p.param_bytes = m.bytes.params;
    p.grad_bytes = m.bytes.grads;
    p.bf16_param_bytes = m.bytes.bf16_params;
    p.optimizer = optimizer_info(cfg.optimizer.name).name;
    p.optimizer_parts = optimizer_state_parts(p.optimizer, split.hidden, split.rest);
    const std::size_t W = static_cast<std::size_t>(p.data_parallel_degree);
    divide_over_zero_ranks(p);
    if (p.zero == 1) {
        // ZeroShard's padded buffer (W pieces) and its own piece: a piece is the bucket's share,
        // at most the largest rank's range (about num_params / W).
        const std::size_t bucket =
            static_cast<std::size_t>(cfg.parallelism.bucket_mb * (1 << 20) / sizeof(float));
        const std::size_t n = static_cast<std::size_t>(p.local_params);
        const std::size_t piece = std::min((n + W - 1) / W, std::max<std::size_t>(1, bucket / W));
        p.zero_buffer_bytes = piece * (W + 1) * sizeof(float);
    }
    for (const auto& part : p.optimizer_parts) p.optimizer_bytes += part.bytes;

    p.saved_activation_bytes = m.bytes.arena;
    p.layer_buffer_bytes = m.bytes.layers;
    p.backward_buffer_bytes = m.bytes.backward;
    p.head_chunk_bytes = m.bytes.head;
    p.batch_bytes = m.bytes.batch;
    p.tp_stage_bytes = m.bytes.tp_stage;
    p.activation_bytes = m.bytes.activations();
    p.rope_bytes = m.bytes.rope;

    // Newton-Schulz's GEMMs run in bf16 for a bf16 model or optimizer.ns_precision = bf16.
    const auto ns = cfg.optimizer.hyper.find("ns_precision");
    const bool ns_bf16 =
        p.precision == "bfloat16" ||
        (ns != cfg.optimizer.hyper.end() && std::holds_alternative<std::string>(ns->second) &&
         std::get<std::string>(ns->second) == "bf16");
    long trained = 0;
    for (const auto& part : p.optimizer_parts) trained += part.params;
    const std::size_t optimizer_buffers =
        optimizer_device_bytes(p.optimizer, m.views, trained, ns_bf16);
    const std::size_t attention = m.attention.scratch_bytes();
    p.temporary_bytes = kCublasWorkspaceBytes + attention + optimizer_buffers;
    p.temporary_what = "cuBLAS workspace";
    if (attention > 0) p.temporary_what += ", attention scratch";
    if (optimizer_buffers > 0) p.temporary_what += ", " + p.optimizer + "'s buffers";
    p.runtime_bytes = 0;
    p.total_bytes = p.param_bytes + p.grad_bytes + p.bf16_param_bytes + p.optimizer_bytes +
                    p.activation_bytes + p.rope_bytes + p.zero_buffer_bytes + p.temporary_bytes;
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
    const bool cuda = cfg.training.device == "cuda";
    if (cfg.model.name != "agpt" && !(cuda && cfg.model.name == "gpt2"))
        fail(
            "plan: model.name = {}: only the agpt family (and gpt2 on cuda) has a memory model "
            "(its arena layout)",
            cfg.model.name);
    MemoryPlan p;
    p.family = cfg.model.name;
    p.flavor = cfg.model.flavor;
    if (vocab_size <= 0) vocab_size = Tokenizer::load(cfg.model.tokenizer).vocab_size();
    p.batch = cfg.training.local_batch_size;
    p.seq_len = cfg.training.seq_len;
    p.activation_checkpoint = activation_checkpoint_from(cfg.activation_checkpoint.mode);
    p.tensor_parallel_degree = cfg.parallelism.tensor_parallel_degree;
    p.data_parallel_degree = std::max(cfg.parallelism.data_parallel_degree, 1);
    p.zero = cfg.parallelism.zero;
    if (p.family == "agpt") {
        p.args = resolve_model_args(cfg.model.flavor, cfg.model.switches());
        p.args.vocab_size = vocab_size;  // the tokenizer's, as the trainer sets it
        p.params = p.args.num_params();
        p.active_params = p.args.num_active_params();
        p.flops_per_token = p.args.flops_per_token(p.seq_len);
    }
    const ModelArgs& a = p.args;
    if (p.family == "agpt" && !a.mla &&
        (a.dim % a.n_heads != 0 || a.n_heads % a.n_kv_heads != 0 || a.head_dim() % 2 != 0))
        fail("plan: flavor {} has an impossible head layout (dim {}, heads {}/{})", p.flavor, a.dim,
             a.n_heads, a.n_kv_heads);
    if (cuda) {
        plan_cuda_memory(p, cfg, vocab_size);
        return finish(p, device_memory_gib);
    }

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
    divide_over_zero_ranks(p);
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
    return finish(p, device_memory_gib);
}

std::string format_plan(const MemoryPlan& p) {
    const ModelArgs& a = p.args;
    std::string s =
        p.family == "gpt2"
            ? fmt::format("model gpt2/{}: dim {} layers {} heads {} vocab {} (model.tokenizer)\n",
                          p.flavor, a.dim, a.n_layers, a.n_heads, a.vocab_size)
            : fmt::format(
                  "model agpt/{}: dim {} layers {} heads {}/{} ffn {} vocab {} (model.tokenizer) "
                  "({})\n",
                  p.flavor, a.dim, a.n_layers, a.n_heads, a.n_kv_heads, a.ffn_hidden(),
                  a.vocab_size, a.describe_switches());
    s += fmt::format(
        "parameters       {} ({:.3f}B), active {}\n"
        "FLOPs per token  {:.4g} (training, seq_len {})\n"
        "batch {} x {} = {} tokens per micro-batch | optimizer {}\n"
        "activation checkpointing {} | tensor parallel {} ({} parameters per rank) | data "
        "parallel {}, ZeRO-{}{}\n\n",
        p.params, static_cast<double>(p.params) / 1e9, p.active_params, p.flops_per_token,
        p.seq_len, p.batch, p.seq_len, static_cast<long>(p.batch) * p.seq_len, p.optimizer,
        checkpoint_mode_name(p.activation_checkpoint), p.tensor_parallel_degree, p.local_params,
        p.data_parallel_degree, p.zero,
        p.expert_parallel_degree > 1
            ? fmt::format(" | expert parallel {}", p.expert_parallel_degree)
            : "");
    const auto row = [&](const std::string& what, std::size_t b) {
        s += fmt::format("  {:<64} {:>11}\n", what, bytes_text(b));
    };
    const auto optimizer_rows = [&](const std::string& what) {
        row(what, p.optimizer_bytes);
        for (const auto& part : p.optimizer_parts)
            row(fmt::format("  {} ({} params)", part.optimizer, part.params), part.bytes);
    };
    if (p.cuda) {
        const bool bf16 = p.precision == "bfloat16";
        s += bf16 ? "memory per GPU (bf16 params + fp32 master, cuda trainer)\n"
                  : "memory per GPU (fp32, cuda trainer)\n";
        row("parameters (fp32 master)", p.param_bytes);
        row("gradients (fp32)", p.grad_bytes);
        if (bf16) row("bf16 copy of the parameters", p.bf16_param_bytes);
        optimizer_rows("optimizer state (fp32)");
        row(bf16 ? "activations (bf16; statistics fp32)" : "activations (fp32)",
            p.activation_bytes);
        row("  saved for backward", p.saved_activation_bytes);
        if (p.layer_buffer_bytes > 0) row("  MLA/MoE layers' buffers", p.layer_buffer_bytes);
        row("  backward buffers", p.backward_buffer_bytes);
        row("  LM-head logits chunk", p.head_chunk_bytes);
        row("  batch and losses", p.batch_bytes);
        if (p.tp_stage_bytes > 0) row("  fp32 staging of the TP all-reduces", p.tp_stage_bytes);
        if (p.rope_bytes > 0) row("RoPE tables", p.rope_bytes);
        if (p.zero == 1) row("ZeRO-1 transfer buffers", p.zero_buffer_bytes);
        row("workspace: " + p.temporary_what, p.temporary_bytes);
        row("total", p.total_bytes);
        s += "  not counted: the CUDA context (~500 MiB), allocator fragmentation, NCCL buffers\n";
    } else {
        s += "memory per device (fp32, CPU trainer)\n";
        row("parameters", p.param_bytes);
        row("gradients", p.grad_bytes);
        optimizer_rows("optimizer state");
        row("activations", p.activation_bytes);
        row("  saved for backward", p.saved_activation_bytes);
        row("  backward buffers", p.backward_buffer_bytes);
        row("  LM-head logits chunk", p.head_chunk_bytes);
        row("RoPE tables", p.rope_bytes);
        row("largest temporary: " + p.temporary_what, p.temporary_bytes);
        row("runtime (process baseline)", p.runtime_bytes);
        row("total", p.total_bytes);
    }
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
    if (p.cuda) {
        j["device"] = "cuda";
        j["model"] = p.family;
        j["precision"] = p.precision;
        j["expert_parallel_degree"] = p.expert_parallel_degree;
        j["bytes"]["bf16_parameters"] = p.bf16_param_bytes;
        j["bytes"]["layer_buffers"] = p.layer_buffer_bytes;
        j["bytes"]["batch"] = p.batch_bytes;
        j["bytes"]["tp_stage"] = p.tp_stage_bytes;
        j["bytes"]["zero_buffers"] = p.zero_buffer_bytes;
        j["bytes"]["workspace"] = p.temporary_bytes;
        j["workspace_what"] = p.temporary_what;
    }
    if (p.device_memory_gib > 0) {
        j["device_memory_gib"] = p.device_memory_gib;
        j["fits"] = p.fits;
    }
    return j;
}

}  // namespace agpt
