// The GPU transformer (transformer_gpu.h). Compiled into agpt_lib by its source glob, so the
// whole file is empty without the CUDA backend.
#if defined(AGPT_HAVE_CUDA)

#include "model/gpu/transformer_gpu.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>

#include "core/error.h"
#include "dist/communicator.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/model_ops.h"
#include "kernels/cuda/relu2.h"
#include "kernels/cuda/rmsnorm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/softcap.h"
#include "model/gpu/gpu_model_base.h"

namespace agpt {

using cuda::bf16;
using namespace gpu_detail;

// Offsets (in elements) of one layer's parameters in the flat buffers; 0 (the embedding's) for
// what the layer lacks. wk, wv follow wq and w3 follows w1, so wq and w1 start the fused qkv and
// w1|w3 matrices. MLA: wq is the plain query projection (0 with q LoRA), wo as above. MoE layers
// have the router, expert bias and experts in place of w1, w2.
struct TransformerGpu::LayerOffsets {
    std::size_t attention_norm, wq, wo, q_norm, k_norm, ffn_norm, w1, w2;
    std::size_t wq_a, mla_q_norm, wq_b, wkv_a, kv_norm, wkv_b;
    std::size_t router, expert_bias, experts_w1, experts_w2, experts_w3, shared_w1, shared_w2,
        shared_w3;
};

namespace {

// The first `cols` elements of each of N rows: src rows are src_stride elements apart, dst rows
// dst_stride (QK-norm: q|k between the fused qkv rows and their own buffer).
template <typename T>
void copy_columns_async(T* dst, long dst_stride, const T* src, long src_stride, long cols, int N,
                        cudaStream_t s) {
    if (N > 0 && cols > 0)
        AGPT_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_stride * sizeof(T), src, src_stride * sizeof(T),
                                          cols * sizeof(T), N, cudaMemcpyDeviceToDevice, s));
}

ModelArgs checked(const ModelArgs& args) {
    for (const auto& [what, cap] : {std::pair{"attn_softcap", args.attn_softcap},
                                    std::pair{"final_softcap", args.final_softcap}})
        if (!(cap >= 0.0) || !std::isfinite(cap))
            fail("model: {} = {} must be 0 (off) or positive", what, cap);
    // MLA's head sizes are its own (MlaGpu checks them).
    if (!args.mla && args.dim % args.n_heads != 0)
        fail("model: dim {} is not divisible by n_heads {}", args.dim, args.n_heads);
    if (!args.mla && args.n_heads % args.n_kv_heads != 0)
        fail("model: n_heads {} is not divisible by n_kv_heads {}", args.n_heads, args.n_kv_heads);
    if (!args.mla && args.head_dim() % 2 != 0)
        fail("model: head_dim {} must be even for RoPE", args.head_dim());
    if (!args.mla && args.head_dim() > 128)
        fail("model: head_dim {} is above 128 (cuda)", args.head_dim());
    return args;
}

}  // namespace

const char* gpu_precision_name(GpuPrecision p) {
    return p == GpuPrecision::bf16 ? "bfloat16" : "float32";
}

TransformerGpu::TransformerGpu(const ModelArgs& args, int max_batch, int max_seq,
                               GpuPrecision precision, cudaStream_t stream,
                               ActivationCheckpoint checkpoint)
    : GpuModelBase(transformer_layout(checked(args)).views, args.vocab_size, max_batch, max_seq,
                   precision, stream),
      args_(args),
      checkpoint_(checkpoint) {
    find_offsets();

    const cudaStream_t s = blas_.stream();
    const std::size_t N = max_tokens();
    const std::size_t es = precision_ == GpuPrecision::bf16 ? sizeof(bf16) : sizeof(float);
    arena_ = cuda::DeviceBuffer<unsigned char>(
        arena_map(args, widths(args, 1), N, es, checkpoint).size());
    dacts_ = cuda::DeviceBuffer<unsigned char>(grad_layout(args, widths(args, 1), N, es).size);
    row_weights_ = cuda::DeviceBuffer<float>(N);

    const int half = args.head_dim() / 2;
    std::vector<float> cos_t(static_cast<std::size_t>(max_seq) * half),
        sin_t(static_cast<std::size_t>(max_seq) * half);
    cpu::rope_tables<float>(cos_t.data(), sin_t.data(), max_seq, args.head_dim(), args.rope_theta);
    rope_cos_ = cuda::DeviceBuffer<float>(cos_t.size());
    rope_sin_ = cuda::DeviceBuffer<float>(sin_t.size());
    upload_sync(rope_cos_, cos_t.data(), s);
    upload_sync(rope_sin_, sin_t.data(), s);

    // As the CPU model: under full checkpointing one MLA serves every layer and the MoE layers
    // share their buffers (a layer's forward is recomputed before its backward).
    auto build_blocks = [&]<typename T>(Blocks<T>& b) {
        const bool full = checkpoint == ActivationCheckpoint::full;
        std::shared_ptr<typename MoeFfnGpu<T>::Buffers> moe_buffers;
        for (int layer = 0; layer < args.n_layers; layer++) {
            if (args.mla && (!full || layer == 0))
                b.mla.push_back(
                    std::make_unique<MlaGpu<T>>(mla_shape_of(args), max_batch, max_seq, blas_));
            if (!args.is_moe_layer(layer)) {
                b.moe.push_back(nullptr);
                continue;
            }
            b.moe.push_back(std::make_unique<MoeFfnGpu<T>>(moe_shape_of(args), static_cast<int>(N),
                                                           blas_, moe_buffers));
            if (full) moe_buffers = b.moe.back()->buffers();
        }
    };
    if (precision_ == GpuPrecision::bf16)
        build_blocks(blocks_bf16_);
    else
        build_blocks(blocks_f32_);
}

TransformerGpu::~TransformerGpu() = default;

void TransformerGpu::find_offsets() {
    layer_offsets_.clear();
    off_tok_ = view("tok_embeddings.weight").offset;
    off_norm_ = view("norm.weight").offset;
    off_output_ = view("output.weight").offset;
    for (int i = 0; i < args_.n_layers; i++) {
        const std::string p = "layers." + std::to_string(i) + ".";
        // 0 where the layer lacks the tensor.
        auto offset = [&](const std::string& name) -> std::size_t {
            for (const auto& v : views_)
                if (v.name == p + name) return v.offset;
            return 0;
        };
        LayerOffsets o{};
        o.attention_norm = offset("attention_norm.weight");
        o.wq = offset("attention.wq.weight");
        o.wo = offset("attention.wo.weight");
        if (args_.mla) {
            o.wq_a = offset("attention.wq_a.weight");
            o.mla_q_norm = offset("attention.q_norm.weight");
            o.wq_b = offset("attention.wq_b.weight");
            o.wkv_a = offset("attention.wkv_a.weight");
            o.kv_norm = offset("attention.kv_norm.weight");
            o.wkv_b = offset("attention.wkv_b.weight");
        } else if (args_.qk_norm) {
            o.q_norm = offset("attention.q_norm.weight");
            o.k_norm = offset("attention.k_norm.weight");
        }
        o.ffn_norm = offset("ffn_norm.weight");
        o.w1 = offset("feed_forward.w1.weight");
        o.w2 = offset("feed_forward.w2.weight");
        o.router = offset("moe.router.gate.weight");
        o.expert_bias = offset("moe.expert_bias");
        o.experts_w1 = offset("moe.experts.w1");
        o.experts_w2 = offset("moe.experts.w2");
        o.experts_w3 = offset("moe.experts.w3");
        o.shared_w1 = offset("moe.shared_experts.w1.weight");
        o.shared_w2 = offset("moe.shared_experts.w2.weight");
        o.shared_w3 = offset("moe.shared_experts.w3.weight");
        layer_offsets_.push_back(o);
    }
}

void TransformerGpu::set_expert_parallel(Communicator* ep) {
    if (ep != nullptr && !args_.is_moe())
        fail("model: expert parallelism needs a model with routed experts");
    const int ranks = ep != nullptr ? ep->size() : 1;
    if (args_.n_experts % ranks != 0)
        fail("model: {} routed experts cannot be divided over {} expert-parallel ranks",
             args_.n_experts, ranks);
    for (auto& m : blocks_f32_.moe)
        if (m) m->set_expert_parallel(ep);
    for (auto& m : blocks_bf16_.moe)
        if (m) m->set_expert_parallel(ep);
    // The routed experts shrink to E/e per layer.
    relayout(ranks);
}

void TransformerGpu::relayout(int expert_ranks) {
    // The grad-norm scratch, sized for the full model, is large enough.
    set_views(transformer_layout(args_, tp_, expert_ranks).views);
    find_offsets();
}

void TransformerGpu::set_tensor_parallel(const TensorParallel& tp) {
    const int n = tp.degree;
    if (n < 1) fail("model: tensor-parallel degree {} must be positive", n);
    if (tp.active()) {
        if (args_.mla || args_.is_moe())
            fail("model: tensor parallelism covers the dense agpt flavors only, not MLA/MoE");
        if (args_.n_heads % n != 0 || args_.n_kv_heads % n != 0 || args_.ffn_hidden() % n != 0)
            fail(
                "model: {} heads, {} KV heads and FFN width {} must all be divisible by the "
                "tensor-parallel degree {}",
                args_.n_heads, args_.n_kv_heads, args_.ffn_hidden(), n);
        if (args_.vocab_size < n)
            fail("model: vocabulary {} is smaller than the tensor-parallel degree {}",
                 args_.vocab_size, n);
        if (tp.group == nullptr || tp.group->size() != n || tp.group->rank() != tp.rank)
            fail("model: the tensor-parallel group does not match rank {} of {}", tp.rank, n);
    }
    tp_ = tp;
    relayout(1);
    // This rank's activations, and the head's scratch for its vocabulary rows (the chunk, from
    // the full vocabulary, is the same on every rank).
    const std::size_t N = max_tokens();
    const std::size_t es = precision_ == GpuPrecision::bf16 ? sizeof(bf16) : sizeof(float);
    const Widths w = widths(args_, n);
    arena_ = cuda::DeviceBuffer<unsigned char>(arena_map(args_, w, N, es, checkpoint_).size());
    dacts_ = cuda::DeviceBuffer<unsigned char>(grad_layout(args_, w, N, es).size);
    if (!tp.active()) return;
    const int rows = vocab_range(args_.vocab_size, tp.rank, n).second;
    // The vocabulary-parallel head keeps fp32 logits (and their bf16 copy): fp32-sized chunks.
    head_chunk_ = lm_head_chunk(N, args_.vocab_size);
    const std::size_t head_bytes =
        precision_ == GpuPrecision::bf16
            ? cuda::vocab_parallel_scratch_bytes<bf16>(head_chunk_, rows)
            : cuda::vocab_parallel_scratch_bytes<float>(head_chunk_, rows);
    scratch_ = cuda::DeviceBuffer<unsigned char>(
        std::max(head_bytes, cuda::grad_norm_scratch_bytes(n_params_)));
    if (precision_ == GpuPrecision::bf16)
        tp_stage_ = cuda::DeviceBuffer<float>(N * static_cast<std::size_t>(args_.dim));
}

template <typename T>
void TransformerGpu::sum_over_tp(T* p, std::size_t n) {
    if (!tp_.active()) return;
    const cudaStream_t s = blas_.stream();
    if constexpr (std::is_same_v<T, float>) {
        tp_.group->all_reduce(p, n, ReduceOp::Sum);
    } else {
        // NCCL could sum bf16 directly, rounding each partial sum to bf16; the fp32 staging keeps
        // the reduction in fp32 and rounds once.
        cuda::cast_to_float(tp_stage_.data(), p, n, s);
        tp_.group->all_reduce(tp_stage_.data(), n, ReduceOp::Sum);
        cuda::cast_to_bf16(p, tp_stage_.data(), n, s);
    }
    mark("tensor-parallel all-reduce");
}

template <typename T>
TransformerGpu::Blocks<T>& TransformerGpu::blocks() {
    if constexpr (std::is_same_v<T, float>)
        return blocks_f32_;
    else
        return blocks_bf16_;
}

template <typename T>
MlaGpu<T>& TransformerGpu::mla_at(int layer) {
    auto& mla = blocks<T>().mla;
    return *mla[mla.size() == 1 ? 0 : layer];
}

namespace {

// A layer's MLA or MoE tensors as pointers into one flat buffer (the weights or the gradients;
// null where the layer has none): Views is MlaWeights<T>/MlaGrads<float>, MoeWeights<T>/MoeGrads.
template <typename Views, typename Ptr, typename Offsets>
Views mla_views(Ptr base, const Offsets& o) {
    auto at_offset = [&](std::size_t off) { return off > 0 ? base + off : nullptr; };
    Views m;
    m.wq = at_offset(o.wq);
    m.wq_a = at_offset(o.wq_a);
    m.q_norm = at_offset(o.mla_q_norm);
    m.wq_b = at_offset(o.wq_b);
    m.wkv_a = at_offset(o.wkv_a);
    m.kv_norm = at_offset(o.kv_norm);
    m.wkv_b = at_offset(o.wkv_b);
    m.wo = at_offset(o.wo);
    return m;
}

template <typename Views, typename Ptr, typename Offsets>
Views moe_views(Ptr base, const Offsets& o) {
    auto at_offset = [&](std::size_t off) { return off > 0 ? base + off : nullptr; };
    Views m;
    m.router = at_offset(o.router);
    m.w1 = at_offset(o.experts_w1);
    m.w2 = at_offset(o.experts_w2);
    m.w3 = at_offset(o.experts_w3);
    m.shared_w1 = at_offset(o.shared_w1);
    m.shared_w2 = at_offset(o.shared_w2);
    m.shared_w3 = at_offset(o.shared_w3);
    return m;
}

}  // namespace

template <typename T>
MlaWeights<T> TransformerGpu::mla_weights(int layer) const {
    return mla_views<MlaWeights<T>>(weights<T>(), layer_offsets_[layer]);
}

MlaGrads<float> TransformerGpu::mla_grads(int layer) {
    return mla_views<MlaGrads<float>>(grads_.data(), layer_offsets_[layer]);
}

template <typename T>
MoeWeights<T> TransformerGpu::moe_weights(int layer) const {
    auto m = moe_views<MoeWeights<T>>(weights<T>(), layer_offsets_[layer]);
    m.expert_bias = params_.data() + layer_offsets_[layer].expert_bias;  // fp32 in the router
    return m;
}

MoeGrads<float> TransformerGpu::moe_grads(int layer) {
    return moe_views<MoeGrads<float>>(grads_.data(), layer_offsets_[layer]);
}

std::vector<int> TransformerGpu::moe_layer_ids() const {
    std::vector<int> ids;
    for (int layer = 0; layer < args_.n_layers; layer++)
        if (args_.is_moe_layer(layer)) ids.push_back(layer);
    return ids;
}

std::vector<std::vector<double>> TransformerGpu::expert_loads() const {
    std::vector<std::vector<double>> loads;
    for (int layer : moe_layer_ids())
        loads.push_back(precision_ == GpuPrecision::bf16
                            ? blocks_bf16_.moe[layer]->tokens_per_expert()
                            : blocks_f32_.moe[layer]->tokens_per_expert());
    return loads;
}

void TransformerGpu::update_expert_bias(const std::vector<std::vector<double>>& loads,
                                        double coeff) {
    const std::vector<int> ids = moe_layer_ids();
    if (loads.size() != ids.size())
        fail("model: expert loads for {} MoE layers, the model has {}", loads.size(), ids.size());
    // E floats per layer through the host: the CPU's rule, bit for bit.
    const cudaStream_t s = blas_.stream();
    std::vector<float> bias(static_cast<std::size_t>(args_.n_experts));
    for (std::size_t i = 0; i < ids.size(); i++) {
        float* device_bias = params_.data() + layer_offsets_[ids[i]].expert_bias;
        AGPT_CUDA_CHECK(cudaMemcpyAsync(bias.data(), device_bias, bias.size() * sizeof(float),
                                        cudaMemcpyDeviceToHost, s));
        AGPT_CUDA_CHECK(cudaStreamSynchronize(s));
        agpt::update_expert_bias(bias.data(), loads[i], coeff);
        AGPT_CUDA_CHECK(cudaMemcpyAsync(device_bias, bias.data(), bias.size() * sizeof(float),
                                        cudaMemcpyHostToDevice, s));
        if (precision_ == GpuPrecision::bf16)
            blocks_bf16_.moe[ids[i]]->reset_load();
        else
            blocks_f32_.moe[ids[i]]->reset_load();
    }
    AGPT_CUDA_CHECK(cudaStreamSynchronize(s));  // `bias` must outlive the last copy
}

double TransformerGpu::moe_aux_loss() const {
    double sum = 0.0;
    for (int layer : moe_layer_ids())
        sum += precision_ == GpuPrecision::bf16 ? blocks_bf16_.moe[layer]->aux_loss()
                                                : blocks_f32_.moe[layer]->aux_loss();
    return sum;
}

std::size_t TransformerGpu::activation_bytes() const {
    std::size_t blocks = 0;
    auto add = [&](const auto& b) {
        for (const auto& m : b.mla) blocks += m->bytes();
        for (const auto& m : b.moe)
            if (m) {
                blocks += m->bytes();
                if (checkpoint_ == ActivationCheckpoint::full) break;  // one set of shared buffers
            }
    };
    add(blocks_f32_);
    add(blocks_bf16_);
    return arena_.bytes() + dacts_.bytes() + row_weights_.bytes() + tp_stage_.bytes() + blocks +
           common_activation_bytes();
}

template <typename T>
void TransformerGpu::forward_impl(int B, int T_len) {
    const int N = B * T_len, D = args_.dim;
    const std::size_t maxN = max_tokens();
    const ArenaMap m = arena_map(args_, widths(args_, tp_.degree), maxN, sizeof(T), checkpoint_);
    const T* w = weights<T>();
    if (tp_.active()) {
        const auto [first, rows] = vocab_range(args_.vocab_size, tp_.rank, tp_.degree);
        cuda::embedding_forward_rows<T>(at<T>(arena_, m.input(0)), tokens_.data(), w + off_tok_, N,
                                        D, first, rows, blas_.stream());
        mark("embedding");
        sum_over_tp(at<T>(arena_, m.input(0)), static_cast<std::size_t>(N) * D);
    } else {
        cuda::embedding_forward<T>(at<T>(arena_, m.input(0)), tokens_.data(), w + off_tok_, N, D,
                                   blas_.stream());
        mark("embedding");
    }
    for (int layer = 0; layer < args_.n_layers; layer++) forward_layer<T>(layer, B, T_len, false);
    cuda::rmsnorm_forward<T>(at<T>(arena_, m.final_norm()), at<float>(arena_, m.final_rstd()),
                             at<T>(arena_, m.input(args_.n_layers)), w + off_norm_, N, D,
                             static_cast<float>(args_.norm_eps), blas_.stream());
    mark("rmsnorm");
}

// recompute (activation checkpointing, before the layer's backward): refills the working set
// from the saved input and stops before the FFN's output projection, whose result is already
// the next layer's saved input.
template <typename T>
void TransformerGpu::forward_layer(int layer, int B, int T_len, bool recompute) {
    const Widths wd = widths(args_, tp_.degree);
    const int N = B * T_len, D = args_.dim, F = wd.ffn, H = wd.heads, KV = wd.kv_heads,
              hd = args_.head_dim(), Q = (H + 2 * KV) * hd, A = H * hd, QK = (H + KV) * hd,
              FI = static_cast<int>(ffn_in(args_, wd));
    const float eps = static_cast<float>(args_.norm_eps);
    const std::size_t maxN = max_tokens();
    const ArenaMap m = arena_map(args_, widths(args_, tp_.degree), maxN, sizeof(T), checkpoint_);
    const ActLayout& l = m.l;
    const cudaStream_t s = blas_.stream();
    const T* w = weights<T>();
    const std::size_t ND = static_cast<std::size_t>(N) * D;
    const std::size_t base = m.saved(layer);
    const LayerOffsets& p = layer_offsets_[layer];
    const T* x = at<T>(arena_, m.input(layer));
    T* anorm = at<T>(arena_, base + l.anorm);
    T* qkv = at<T>(arena_, base + l.qkv);
    T* attn = at<T>(arena_, base + l.attn);
    T* h = at<T>(arena_, base + l.h);
    T* fnorm = at<T>(arena_, base + l.fnorm);
    T* h13 = at<T>(arena_, base + l.h13);
    T* gate = at<T>(arena_, base + l.gate);
    cuda::rmsnorm_forward<T>(anorm, at<float>(arena_, base + l.arstd), x, w + p.attention_norm, N,
                             D, eps, s);
    mark("rmsnorm");
    if (args_.mla) {
        copy_async(h, x, ND * sizeof(T), s);
        mark("residual copy");
        mla_at<T>(layer).forward(h, anorm, mla_weights<T>(layer), B, T_len);
        mark("mla");
    } else {
        cuda::matmul_forward<T>(blas_, qkv, anorm, w + p.wq, N, D, Q);
        mark("gemm qkv");
        if (args_.qk_norm) {
            // Keep q|k before the norm for backward, then normalise each head in place.
            T* raw = at<T>(arena_, base + l.qk_raw);
            float* rstd = at<float>(arena_, base + l.qk_rstd);
            copy_columns_async(raw, QK, qkv, Q, QK, N, s);
            cuda::rmsnorm_heads_forward<T>(qkv, Q, rstd, raw, QK, w + p.q_norm, N, H, hd, eps, s);
            cuda::rmsnorm_heads_forward<T>(qkv + H * hd, Q, rstd + maxN * H, raw + H * hd, QK,
                                           w + p.k_norm, N, KV, hd, eps, s);
            mark("qk-norm");
        }
        cuda::rope_forward_vec<T>(qkv, rope_cos_.data(), rope_sin_.data(), B, T_len, H + KV, hd, Q,
                                  s);
        mark("rope");
        cuda::attention_forward<T>(attn, at<float>(arena_, base + l.lse), qkv, B, T_len, H, KV, hd,
                                   static_cast<float>(args_.attn_softcap), s);
        mark("attention");
        cuda::matmul_forward_bias<T>(blas_, h, attn, w + p.wo, nullptr, residual_on_this_rank(x), N,
                                     A, D);
        mark("gemm wo + residual");
        sum_over_tp(h, ND);
    }
    cuda::rmsnorm_forward<T>(fnorm, at<float>(arena_, base + l.frstd), h, w + p.ffn_norm, N, D, eps,
                             s);
    mark("rmsnorm");
    if (args_.is_moe_layer(layer)) {
        // A recompute routes again (count_load_ is off then: the loads are counted once) and
        // rewrites the next layer's saved input with the same bits.
        T* x_next = at<T>(arena_, m.input(layer + 1));
        copy_async(x_next, h, ND * sizeof(T), s);
        mark("residual copy");
        blocks<T>().moe[layer]->forward(x_next, fnorm, moe_weights<T>(layer), N, count_load_,
                                        T_len);
        mark("moe");
        return;
    }
    cuda::matmul_forward<T>(blas_, h13, fnorm, w + p.w1, N, D, FI);
    if (args_.ffn == FfnType::swiglu) {
        mark("gemm w1|w3");
        cuda::swiglu_forward_vec<T>(gate, h13, N, F, s);
        mark("swiglu");
    } else {
        mark("gemm w1");
        cuda::relu2_forward<T>(gate, h13, N, F, s);
        mark("relu2");
    }
    if (recompute) return;
    T* x_next = at<T>(arena_, m.input(layer + 1));
    cuda::matmul_forward_bias<T>(blas_, x_next, gate, w + p.w2, nullptr, residual_on_this_rank(h),
                                 N, F, D);
    mark("gemm w2 + residual");
    sum_over_tp(x_next, ND);
}

template <typename T>
void TransformerGpu::head_impl(int N, double grad_scale, bool backward, const float* row_scale) {
    const std::size_t maxN = max_tokens();
    const ArenaMap m = arena_map(args_, widths(args_, tp_.degree), maxN, sizeof(T), checkpoint_);
    T* d_xf = backward ? at<T>(dacts_,
                               grad_layout(args_, widths(args_, tp_.degree), maxN, sizeof(T)).dnorm)
                       : nullptr;
    const float softcap = static_cast<float>(args_.final_softcap);
    if (!tp_.active()) {
        lm_head<T>(at<T>(arena_, m.final_norm()), d_xf, off_output_, N, args_.dim, grad_scale,
                   softcap, row_scale);
        return;
    }
    // The vocabulary-parallel head: fp32 logits of this rank's rows (in bf16 mode too: the
    // combined max and Σexp are formed from them); every rank gets every token's loss.
    const int D = args_.dim;
    const cudaStream_t s = blas_.stream();
    if (d_xf) memset_async(d_xf, static_cast<std::size_t>(N) * D * sizeof(T), s);
    const auto [first, rows] = vocab_range(args_.vocab_size, tp_.rank, tp_.degree);
    const cuda::GroupReduce reduce = [this](float* data, std::size_t n, bool max) {
        tp_.group->all_reduce(data, n, max ? ReduceOp::Max : ReduceOp::Sum);
    };
    cuda::vocab_parallel_cross_entropy<T>(
        blas_, losses_.data(), d_xf, backward ? grads_.data() + off_output_ : nullptr,
        at<T>(arena_, m.final_norm()), weights<T>() + off_output_, targets_.data(), N, D, first,
        rows, static_cast<float>(grad_scale), scratch_.data(), head_chunk_, softcap, row_scale,
        reduce);
    mark("lm head + cross-entropy");
    if (d_xf) sum_over_tp(d_xf, static_cast<std::size_t>(N) * D);
}

template <typename T>
void TransformerGpu::backward_impl(int B, int T_len, double grad_scale) {
    const int N = B * T_len, D = args_.dim;
    const std::size_t maxN = max_tokens();
    const ArenaMap m = arena_map(args_, widths(args_, tp_.degree), maxN, sizeof(T), checkpoint_);
    const BlockGradLayout gl = grad_layout(args_, widths(args_, tp_.degree), maxN, sizeof(T));
    const cudaStream_t s = blas_.stream();
    T* dres = at<T>(dacts_, gl.dres);
    memset_async(dres, static_cast<std::size_t>(N) * D * sizeof(T), s);
    mark("memset");
    // The head wrote d(final norm output) to the d_norm buffer.
    cuda::rmsnorm_backward<T>(dres, grads_.data() + off_norm_, at<T>(dacts_, gl.dnorm),
                              at<T>(arena_, m.input(args_.n_layers)), weights<T>() + off_norm_,
                              at<float>(arena_, m.final_rstd()), N, D, s);
    mark("rmsnorm backward");
    grads_ready(off_norm_, n_params_);
    for (int layer = args_.n_layers - 1; layer >= 0; layer--) {
        if (m.full) forward_layer<T>(layer, B, T_len, true);
        backward_layer<T>(layer, B, T_len, grad_scale);
        grads_ready(
            layer_offsets_[layer].attention_norm,
            layer + 1 < args_.n_layers ? layer_offsets_[layer + 1].attention_norm : off_norm_);
    }
    if (tp_.active()) {
        const auto [first, rows] = vocab_range(args_.vocab_size, tp_.rank, tp_.degree);
        cuda::embedding_backward_rows<T>(grads_.data() + off_tok_, dres, tokens_.data(), N, D,
                                         first, rows, s);
    } else {
        cuda::embedding_backward<T>(grads_.data() + off_tok_, dres, tokens_.data(), N, D, s);
    }
    mark("embedding backward");
    grads_ready(0, layer_offsets_.empty() ? off_norm_ : layer_offsets_[0].attention_norm);
}

template <typename T>
void TransformerGpu::backward_layer(int layer, int B, int T_len, double grad_scale) {
    const Widths wd = widths(args_, tp_.degree);
    const int N = B * T_len, D = args_.dim, F = wd.ffn, H = wd.heads, KV = wd.kv_heads,
              hd = args_.head_dim(), Q = (H + 2 * KV) * hd, A = H * hd, QK = (H + KV) * hd,
              FI = static_cast<int>(ffn_in(args_, wd));
    const std::size_t maxN = max_tokens();
    const ArenaMap m = arena_map(args_, widths(args_, tp_.degree), maxN, sizeof(T), checkpoint_);
    const ActLayout& l = m.l;
    const BlockGradLayout gl = grad_layout(args_, widths(args_, tp_.degree), maxN, sizeof(T));
    const cudaStream_t s = blas_.stream();
    const T* w = weights<T>();
    float* g = grads_.data();
    T* dres = at<T>(dacts_, gl.dres);
    T* d_norm = at<T>(dacts_, gl.dnorm);
    T* d_gate = at<T>(dacts_, gl.dffn_act);
    T* d_h13 = at<T>(dacts_, gl.dffn_pre);
    T* d_attn = at<T>(dacts_, gl.dattn);
    T* d_qkv = at<T>(dacts_, gl.dqkv);
    const std::size_t base = m.saved(layer);
    const LayerOffsets& p = layer_offsets_[layer];
    const std::size_t ND = static_cast<std::size_t>(N) * D;
    // FFN: x_next = h + w2(swiglu(w1|w3 · ffn_norm(h)))  or  h + w2(relu2(w1 · ffn_norm(h))),
    // or h + MoE(ffn_norm(h)) with the balance loss's gradient weighted as the CPU model's.
    if (args_.is_moe_layer(layer)) {
        memset_async(d_norm, ND * sizeof(T), s);
        blocks<T>().moe[layer]->backward(d_norm, moe_grads(layer), dres,
                                         at<T>(arena_, base + l.fnorm), moe_weights<T>(layer), N,
                                         grad_scale * N);
        mark("moe backward");
    } else {
        linear_backward<T>(blas_, d_gate, g + p.w2, dres, at<T>(arena_, base + l.gate), w + p.w2, N,
                           F, D);
        mark("gemm w2 backward");
        if (args_.ffn == FfnType::swiglu) {
            cuda::swiglu_backward_overwrite<T>(d_h13, d_gate, at<T>(arena_, base + l.h13), N, F, s);
            mark("swiglu backward");
        } else {
            cuda::relu2_backward<T>(d_h13, d_gate, at<T>(arena_, base + l.h13), N, F, false, s);
            mark("relu2 backward");
        }
        linear_backward<T>(blas_, d_norm, g + p.w1, d_h13, at<T>(arena_, base + l.fnorm), w + p.w1,
                           N, D, FI);
        mark(args_.ffn == FfnType::swiglu ? "gemm w1|w3 backward" : "gemm w1 backward");
        // Column-parallel w1|w3 leave each rank a partial input gradient: summed before the
        // replicated norm's backward, whose weight gradient is then the same on every rank.
        sum_over_tp(d_norm, ND);
    }
    cuda::rmsnorm_backward<T>(dres, g + p.ffn_norm, d_norm, at<T>(arena_, base + l.h),
                              w + p.ffn_norm, at<float>(arena_, base + l.frstd), N, D, s);
    mark("rmsnorm backward");
    // Attention: h = x + wo · attn(rope(qk_norm(wqkv · attention_norm(x)))), or x + MLA(...)
    if (args_.mla) {
        memset_async(d_norm, ND * sizeof(T), s);
        mla_at<T>(layer).backward(d_norm, mla_grads(layer), dres, at<T>(arena_, base + l.anorm),
                                  mla_weights<T>(layer), B, T_len);
        mark("mla backward");
    } else {
        linear_backward<T>(blas_, d_attn, g + p.wo, dres, at<T>(arena_, base + l.attn), w + p.wo, N,
                           A, D);
        mark("gemm wo backward");
        cuda::attention_backward<T>(d_qkv, d_attn, at<T>(arena_, base + l.qkv),
                                    at<T>(arena_, base + l.attn), at<float>(arena_, base + l.lse),
                                    B, T_len, H, KV, hd, static_cast<float>(args_.attn_softcap), s);
        mark("attention backward");
        cuda::rope_backward_vec<T>(d_qkv, rope_cos_.data(), rope_sin_.data(), B, T_len, H + KV, hd,
                                   Q, s);
        mark("rope backward");
        if (args_.qk_norm) {
            // d_qkv's q|k columns hold d(normalised q|k); replace them with d(raw q|k).
            T* d_qk = at<T>(dacts_, gl.dqk);
            const T* raw = at<T>(arena_, base + l.qk_raw);
            const float* rstd = at<float>(arena_, base + l.qk_rstd);
            memset_async(d_qk, static_cast<std::size_t>(N) * QK * sizeof(T), s);
            // The replicated q/k norms see this rank's heads only: their gradients are summed
            // over the group, rank 0's starting from the accumulated gradient, the others' from
            // 0 (as residual_on_this_rank).
            const std::size_t hd_bytes = static_cast<std::size_t>(hd) * sizeof(float);
            if (tp_.active() && tp_.rank != 0) {
                memset_async(g + p.q_norm, hd_bytes, s);
                memset_async(g + p.k_norm, hd_bytes, s);
            }
            cuda::rmsnorm_heads_backward<T>(d_qk, QK, g + p.q_norm, d_qkv, Q, raw, QK, w + p.q_norm,
                                            rstd, N, H, hd, s);
            cuda::rmsnorm_heads_backward<T>(d_qk + H * hd, QK, g + p.k_norm, d_qkv + H * hd, Q,
                                            raw + H * hd, QK, w + p.k_norm, rstd + maxN * H, N, KV,
                                            hd, s);
            sum_over_tp(g + p.q_norm, hd);
            sum_over_tp(g + p.k_norm, hd);
            copy_columns_async(d_qkv, Q, d_qk, QK, QK, N, s);
            mark("qk-norm backward");
        }
        linear_backward<T>(blas_, d_norm, g + p.wq, d_qkv, at<T>(arena_, base + l.anorm), w + p.wq,
                           N, D, Q);
        mark("gemm qkv backward");
        sum_over_tp(d_norm, ND);
    }
    cuda::rmsnorm_backward<T>(dres, g + p.attention_norm, d_norm, at<T>(arena_, m.input(layer)),
                              w + p.attention_norm, at<float>(arena_, base + l.arstd), N, D, s);
    mark("rmsnorm backward");
}

void TransformerGpu::forward(int B, int T, bool training) {
    // Training forwards count the routing for the expert-bias update; the recomputations under
    // checkpointing and the evaluation forwards do not.
    count_load_ = training;
    if (precision_ == GpuPrecision::bf16)
        forward_impl<bf16>(B, T);
    else
        forward_impl<float>(B, T);
    count_load_ = false;
}

void TransformerGpu::head(int N, double grad_scale, bool backward, const float* row_scale) {
    if (precision_ == GpuPrecision::bf16)
        head_impl<bf16>(N, grad_scale, backward, row_scale);
    else
        head_impl<float>(N, grad_scale, backward, row_scale);
}

void TransformerGpu::backward(int B, int T, double grad_scale) {
    if (precision_ == GpuPrecision::bf16)
        backward_impl<bf16>(B, T, grad_scale);
    else
        backward_impl<float>(B, T, grad_scale);
}

template <typename T>
void TransformerGpu::logits_impl(int N, float* out_device) {
    const ArenaMap m =
        arena_map(args_, widths(args_, tp_.degree), max_tokens(), sizeof(T), checkpoint_);
    const float softcap = static_cast<float>(args_.final_softcap);
    if (!tp_.active()) {
        lm_logits<T>(at<T>(arena_, m.final_norm()), off_output_, N, args_.dim, out_device, softcap);
        return;
    }
    // Each rank's (N, rows) columns, gathered in blocks padded to the longest range (all_gather
    // takes equal counts), then placed in the full rows; forward-only, so not in the arena.
    const int V = args_.vocab_size, n = tp_.degree;
    const std::size_t block = static_cast<std::size_t>(N) * ((V + n - 1) / n);
    const cudaStream_t s = blas_.stream();
    cuda::DeviceBuffer<float> local(block), all(block * n);
    const int rows = vocab_range(V, tp_.rank, n).second;
    cuda::matmul_forward<T, float>(blas_, local.data(), at<T>(arena_, m.final_norm()),
                                   weights<T>() + off_output_, N, args_.dim, rows);
    tp_.group->all_gather(local.data(), all.data(), block);
    for (int q = 0; q < n; q++) {
        const auto [first, count] = vocab_range(V, q, n);
        copy_columns_async(out_device + first, V, all.data() + block * q, count, count, N, s);
    }
    cuda::softcap_forward(out_device, static_cast<long>(N) * V, softcap, s);
}

void TransformerGpu::logits(int N, float* out_device) {
    if (precision_ == GpuPrecision::bf16)
        logits_impl<bf16>(N, out_device);
    else
        logits_impl<float>(N, out_device);
}

void TransformerGpu::token_logprobs(const int32_t* tokens, const int32_t* targets, int B, int T,
                                    double* host_logprobs) {
    run_forward_loss(tokens, targets, B, T);
    const std::size_t N = static_cast<std::size_t>(B) * T;
    std::vector<float> losses(N);
    const cudaStream_t s = blas_.stream();
    AGPT_CUDA_CHECK(cudaMemcpyAsync(losses.data(), losses_.data(), N * sizeof(float),
                                    cudaMemcpyDeviceToHost, s));
    AGPT_CUDA_CHECK(cudaStreamSynchronize(s));
    for (std::size_t i = 0; i < N; i++) host_logprobs[i] = -static_cast<double>(losses[i]);
}

double TransformerGpu::forward_backward_weighted(const int32_t* tokens, const int32_t* targets,
                                                 const float* weights, int B, int T) {
    check_batch_shape(B, T);
    const cudaStream_t s = blas_.stream();
    AGPT_CUDA_CHECK(cudaMemcpyAsync(row_weights_.data(), weights,
                                    static_cast<std::size_t>(B) * T * sizeof(float),
                                    cudaMemcpyHostToDevice, s));
    run_forward_backward(tokens, targets, B, T, 1.0, row_weights_.data());
    return cuda::sum_losses(losses_.data(), B * T, s);
}

}  // namespace agpt

#endif  // AGPT_HAVE_CUDA
