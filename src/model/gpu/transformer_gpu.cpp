// The GPU transformer (transformer_gpu.h). Compiled into agpt_lib by its source glob, so the
// whole file is empty without the CUDA backend.
#if defined(AGPT_HAVE_CUDA)

#include "model/gpu/transformer_gpu.h"

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "core/error.h"
#include "kernels/cpu/rope.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/model_ops.h"
#include "kernels/cuda/rmsnorm.h"
#include "kernels/cuda/rope.h"

namespace agpt {

using cuda::bf16;

// Offsets (in elements) of one layer's parameters in the flat buffers. wk, wv follow wq and w3
// follows w1, so wq and w1 start the fused qkv and w1|w3 matrices.
struct TransformerGpu::LayerOffsets {
    std::size_t attention_norm, wq, wo, ffn_norm, w1, w2;
};

namespace {

constexpr std::size_t align256(std::size_t b) {
    return (b + 255) / 256 * 256;
}

// Byte offsets of one layer's saved activations for N rows with elements of es bytes; the
// statistics (rstd, lse) are fp32. As the CPU arena: the block input, both norm outputs and
// their rstd, the post-RoPE qkv, the attention output and lse, the mid-block residual, the
// w1|w3 output and the SwiGLU output.
struct ActLayout {
    std::size_t x, anorm, arstd, qkv, attn, lse, h, fnorm, frstd, h13, gate, size;
};

ActLayout act_layout(const ModelArgs& a, std::size_t N, std::size_t es) {
    const std::size_t D = a.dim, F = a.ffn_hidden(), Q = a.qkv_dim(),
                      A = static_cast<std::size_t>(a.n_heads) * a.head_dim();
    ActLayout l{};
    std::size_t o = 0;
    auto take = [&](std::size_t bytes) {
        const std::size_t at = o;
        o += align256(bytes);
        return at;
    };
    l.x = take(N * D * es);
    l.anorm = take(N * D * es);
    l.arstd = take(N * 4);
    l.qkv = take(N * Q * es);
    l.attn = take(N * A * es);
    l.lse = take(N * a.n_heads * 4);
    l.h = take(N * D * es);
    l.fnorm = take(N * D * es);
    l.frstd = take(N * 4);
    l.h13 = take(N * 2 * F * es);
    l.gate = take(N * F * es);
    l.size = o;
    return l;
}

// Backward temporaries: the residual gradient, a norm output's gradient, then the FFN's
// (d_gate, d_h13) and the attention's (d_attn, d_qkv) sharing one region (never live together).
struct GradLayout {
    std::size_t dres, dnorm, dgate, dh13, dattn, dqkv, size;
};

GradLayout grad_layout(const ModelArgs& a, std::size_t N, std::size_t es) {
    const std::size_t D = a.dim, F = a.ffn_hidden(), Q = a.qkv_dim(),
                      A = static_cast<std::size_t>(a.n_heads) * a.head_dim();
    GradLayout g{};
    g.dres = 0;
    g.dnorm = align256(N * D * es);
    const std::size_t shared = g.dnorm + align256(N * D * es);
    g.dgate = shared;
    g.dh13 = shared + align256(N * F * es);
    g.dattn = shared;
    g.dqkv = shared + align256(N * A * es);
    g.size = std::max(g.dh13 + align256(N * 2 * F * es), g.dqkv + align256(N * Q * es));
    return g;
}

// Tokens per chunk of the fused head: about 128M logits (512 MiB of fp32) at a time, so the
// head GEMMs have thousands of rows.
int head_chunk(std::size_t N, int V) {
    const long c = (1L << 27) / std::max(V, 1);
    return static_cast<int>(std::clamp<long>(c, 16, std::max<long>(static_cast<long>(N), 16)));
}

// ParamView::numel without linking model/transformer.cpp (and with it the CPU kernels and
// OpenBLAS) into binaries that need only the GPU model.
std::size_t elements(const ParamView& v) {
    std::size_t n = 1;
    for (int s : v.shape) n *= static_cast<std::size_t>(s);
    return n;
}

template <typename T>
T* at(cuda::DeviceBuffer<unsigned char>& buf, std::size_t byte_offset) {
    return reinterpret_cast<T*>(buf.data() + byte_offset);
}

// dinp (M,K) = dout (M,N) · weight (N,K) (overwritten); dweight (N,K, fp32) += doutᵀ · inp.
template <typename T>
void linear_backward(cuda::Blas& blas, T* dinp, float* dweight, const T* dout, const T* inp,
                     const T* weight, int M, int K, int N) {
    cuda::gemm<T, T>(blas, false, false, M, K, N, 1.0f, dout, N, weight, K, 0.0f, dinp, K);
    cuda::gemm<T, float>(blas, true, false, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dweight, K);
}

void memset_async(void* p, std::size_t bytes, cudaStream_t s) {
    if (bytes > 0) AGPT_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, s));
}

void copy_async(void* dst, const void* src, std::size_t bytes, cudaStream_t s) {
    if (bytes > 0) AGPT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
}

// Host -> device on the model's stream, complete on return. (DeviceBuffer::upload's cudaMemcpy
// runs on the legacy default stream, which does not order with a non-blocking stream, and may
// return before a pageable copy has landed.)
template <typename T>
void upload_sync(cuda::DeviceBuffer<T>& dst, const T* host, cudaStream_t s) {
    AGPT_CUDA_CHECK(cudaStreamSynchronize(s));
    if (dst.size() > 0)
        AGPT_CUDA_CHECK(cudaMemcpyAsync(dst.data(), host, dst.bytes(), cudaMemcpyHostToDevice, s));
    AGPT_CUDA_CHECK(cudaStreamSynchronize(s));
}

template <typename T>
void download_sync(const cuda::DeviceBuffer<T>& src, T* host, cudaStream_t s) {
    AGPT_CUDA_CHECK(cudaStreamSynchronize(s));
    if (src.size() > 0)
        AGPT_CUDA_CHECK(cudaMemcpyAsync(host, src.data(), src.bytes(), cudaMemcpyDeviceToHost, s));
    AGPT_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace

const char* gpu_precision_name(GpuPrecision p) {
    return p == GpuPrecision::bf16 ? "bfloat16" : "float32";
}

std::vector<ParamView> transformer_param_views(const ModelArgs& args) {
    // The layout of Transformer::build_views (model/transformer.cpp); the GPU tests check that
    // the two agree name by name.
    std::vector<ParamView> views;
    const int D = args.dim, hd = args.head_dim(), F = args.ffn_hidden();
    std::size_t off = 0;
    auto add = [&](std::string name, std::vector<int> shape, std::string role) {
        ParamView v{std::move(name), off, std::move(shape), std::move(role)};
        off += elements(v);
        views.push_back(std::move(v));
    };
    add("tok_embeddings.weight", {args.vocab_size, D}, "embedding");
    for (int i = 0; i < args.n_layers; i++) {
        const std::string p = "layers." + std::to_string(i) + ".";
        add(p + "attention_norm.weight", {D}, "norm");
        add(p + "attention.wq.weight", {args.n_heads * hd, D}, "attention");
        add(p + "attention.wk.weight", {args.n_kv_heads * hd, D}, "attention");
        add(p + "attention.wv.weight", {args.n_kv_heads * hd, D}, "attention");
        add(p + "attention.wo.weight", {D, args.n_heads * hd}, "attention");
        if (args.qk_norm) {
            add(p + "attention.q_norm.weight", {hd}, "norm");
            add(p + "attention.k_norm.weight", {hd}, "norm");
        }
        add(p + "ffn_norm.weight", {D}, "norm");
        add(p + "feed_forward.w1.weight", {F, D}, "ffn");
        if (args.ffn == FfnType::swiglu) add(p + "feed_forward.w3.weight", {F, D}, "ffn");
        add(p + "feed_forward.w2.weight", {D, F}, "ffn");
    }
    add("norm.weight", {D}, "norm");
    add("output.weight", {args.vocab_size, D}, "head");
    return views;
}

TransformerGpu::TransformerGpu(const ModelArgs& args, int max_batch, int max_seq,
                               GpuPrecision precision, cudaStream_t stream)
    : args_(args), max_batch_(max_batch), max_seq_(max_seq), precision_(precision), blas_(stream) {
    if (args.mla || args.is_moe()) fail("model: MLA and MoE models are not on cuda yet (CPU only)");
    if (args.has_switches())
        fail(
            "model: {} is not on cuda yet (the GPU model runs the plain Llama block: no "
            "qk_norm, soft-caps or relu2)",
            args.describe_switches());
    if (args.dim % args.n_heads != 0)
        fail("model: dim {} is not divisible by n_heads {}", args.dim, args.n_heads);
    if (args.n_heads % args.n_kv_heads != 0)
        fail("model: n_heads {} is not divisible by n_kv_heads {}", args.n_heads, args.n_kv_heads);
    if (args.head_dim() % 2 != 0) fail("model: head_dim {} must be even for RoPE", args.head_dim());
    if (args.head_dim() > 128) fail("model: head_dim {} is above 128 (cuda)", args.head_dim());
    if (max_batch <= 0 || max_seq <= 0)
        fail("model: batch {}×{} must be positive", max_batch, max_seq);

    views_ = transformer_param_views(args);
    n_params_ = views_.back().offset + elements(views_.back());
    off_tok_ = view("tok_embeddings.weight").offset;
    off_norm_ = view("norm.weight").offset;
    off_output_ = view("output.weight").offset;
    for (int i = 0; i < args.n_layers; i++) {
        const std::string p = "layers." + std::to_string(i) + ".";
        layer_offsets_.push_back(
            {view(p + "attention_norm.weight").offset, view(p + "attention.wq.weight").offset,
             view(p + "attention.wo.weight").offset, view(p + "ffn_norm.weight").offset,
             view(p + "feed_forward.w1.weight").offset, view(p + "feed_forward.w2.weight").offset});
    }

    const cudaStream_t s = blas_.stream();
    params_ = cuda::DeviceBuffer<float>(n_params_);
    grads_ = cuda::DeviceBuffer<float>(n_params_);
    params_.fill_bytes(0, s);
    grads_.fill_bytes(0, s);
    if (precision_ == GpuPrecision::bf16) {
        params_bf16_ = cuda::DeviceBuffer<bf16>(n_params_);
        params_bf16_.fill_bytes(0, s);
    }

    const std::size_t N = static_cast<std::size_t>(max_batch) * max_seq;
    const std::size_t es = precision_ == GpuPrecision::bf16 ? sizeof(bf16) : sizeof(float);
    const ActLayout l = act_layout(args, N, es);
    act_layer_bytes_ = l.size;
    // Layers, then the residual stream after the last layer, the final norm and its rstd.
    arena_ = cuda::DeviceBuffer<unsigned char>(l.size * args.n_layers +
                                               2 * align256(N * args.dim * es) + align256(N * 4));
    dacts_ = cuda::DeviceBuffer<unsigned char>(grad_layout(args, N, es).size);
    head_chunk_ = head_chunk(N, args.vocab_size);
    const std::size_t head_bytes =
        precision_ == GpuPrecision::bf16
            ? cuda::lm_head_bf16_logits_scratch_bytes(head_chunk_, args.vocab_size)
            : cuda::lm_head_scratch_bytes<float>(head_chunk_, args.vocab_size);
    scratch_ = cuda::DeviceBuffer<unsigned char>(
        std::max(head_bytes, cuda::grad_norm_scratch_bytes(n_params_)));
    losses_ = cuda::DeviceBuffer<float>(N);
    tokens_ = cuda::DeviceBuffer<int32_t>(N);
    targets_ = cuda::DeviceBuffer<int32_t>(N);
    scalars_ = cuda::DeviceBuffer<double>(2);
    scalars_.fill_bytes(0, s);

    const int half = args.head_dim() / 2;
    std::vector<float> cos_t(static_cast<std::size_t>(max_seq) * half),
        sin_t(static_cast<std::size_t>(max_seq) * half);
    cpu::rope_tables<float>(cos_t.data(), sin_t.data(), max_seq, args.head_dim(), args.rope_theta);
    rope_cos_ = cuda::DeviceBuffer<float>(cos_t.size());
    rope_sin_ = cuda::DeviceBuffer<float>(sin_t.size());
    upload_sync(rope_cos_, cos_t.data(), s);
    upload_sync(rope_sin_, sin_t.data(), s);
}

TransformerGpu::~TransformerGpu() {
    cudaStreamSynchronize(blas_.stream());  // no throw from a destructor
}

const ParamView& TransformerGpu::view(const std::string& name) const {
    for (const auto& v : views_)
        if (v.name == name) return v;
    fail("model: no parameter named '{}'", name);
}

std::size_t TransformerGpu::state_bytes() const {
    return params_.bytes() + grads_.bytes() + params_bf16_.bytes();
}

std::size_t TransformerGpu::activation_bytes() const {
    return arena_.bytes() + dacts_.bytes() + scratch_.bytes() + losses_.bytes() + tokens_.bytes() +
           targets_.bytes();
}

void TransformerGpu::params_changed() {
    if (precision_ == GpuPrecision::bf16)
        cuda::cast_to_bf16(params_bf16_.data(), params_.data(), n_params_, blas_.stream());
}

void TransformerGpu::upload_params(const float* host) {
    upload_sync(params_, host, blas_.stream());
    params_changed();
    AGPT_CUDA_CHECK(cudaStreamSynchronize(blas_.stream()));
}

void TransformerGpu::download_params(float* host) const {
    download_sync(params_, host, blas_.stream());
}

void TransformerGpu::download_grads(float* host) const {
    download_sync(grads_, host, blas_.stream());
}

void TransformerGpu::zero_grad() {
    grads_.fill_bytes(0, blas_.stream());
}

void TransformerGpu::upload_batch(const int32_t* tokens, const int32_t* targets, int B, int T) {
    if (B > max_batch_ || T > max_seq_ || B <= 0 || T <= 0)
        fail("model: batch {}×{} exceeds the allocated {}×{}", B, T, max_batch_, max_seq_);
    const long N = static_cast<long>(B) * T;
    const int V = args_.vocab_size;
    for (long i = 0; i < N; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            fail("model: token id {} at position {} is outside the vocabulary [0, {})", tokens[i],
                 i, V);
    if (targets)
        for (long i = 0; i < N; i++)
            if (targets[i] < -1 || targets[i] >= V)
                fail("model: target id {} at position {} is outside the vocabulary [0, {})",
                     targets[i], i, V);
    const cudaStream_t s = blas_.stream();
    // Pageable host memory: the copy is staged before the call returns.
    AGPT_CUDA_CHECK(
        cudaMemcpyAsync(tokens_.data(), tokens, N * sizeof(int32_t), cudaMemcpyHostToDevice, s));
    if (targets)
        AGPT_CUDA_CHECK(cudaMemcpyAsync(targets_.data(), targets, N * sizeof(int32_t),
                                        cudaMemcpyHostToDevice, s));
}

template <typename T>
void TransformerGpu::forward_impl(int B, int T_len) {
    const int N = B * T_len, D = args_.dim, F = args_.ffn_hidden(), Q = args_.qkv_dim(),
              H = args_.n_heads, KV = args_.n_kv_heads, hd = args_.head_dim(), A = H * hd;
    const float eps = static_cast<float>(args_.norm_eps);
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    const ActLayout l = act_layout(args_, maxN, sizeof(T));
    const cudaStream_t s = blas_.stream();
    const T* w = std::is_same_v<T, float> ? reinterpret_cast<const T*>(params_.data())
                                          : reinterpret_cast<const T*>(params_bf16_.data());
    const std::size_t ND = static_cast<std::size_t>(N) * D;

    cuda::embedding_forward<T>(at<T>(arena_, l.x), tokens_.data(), w + off_tok_, N, D, s);
    mark("embedding");
    for (int layer = 0; layer < args_.n_layers; layer++) {
        const std::size_t base = l.size * layer;
        const LayerOffsets& p = layer_offsets_[layer];
        T* x = at<T>(arena_, base + l.x);
        T* anorm = at<T>(arena_, base + l.anorm);
        T* qkv = at<T>(arena_, base + l.qkv);
        T* attn = at<T>(arena_, base + l.attn);
        T* h = at<T>(arena_, base + l.h);
        T* fnorm = at<T>(arena_, base + l.fnorm);
        T* h13 = at<T>(arena_, base + l.h13);
        T* gate = at<T>(arena_, base + l.gate);
        T* x_next = at<T>(arena_, base + l.size + l.x);  // the next layer's x, or the final one
        cuda::rmsnorm_forward<T>(anorm, at<float>(arena_, base + l.arstd), x, w + p.attention_norm,
                                 N, D, eps, s);
        mark("rmsnorm");
        cuda::matmul_forward<T>(blas_, qkv, anorm, w + p.wq, N, D, Q);
        mark("gemm qkv");
        cuda::rope_forward_vec<T>(qkv, rope_cos_.data(), rope_sin_.data(), B, T_len, H + KV, hd, Q,
                                  s);
        mark("rope");
        cuda::attention_forward<T>(attn, at<float>(arena_, base + l.lse), qkv, B, T_len, H, KV, hd,
                                   0.0f, s);
        mark("attention");
        copy_async(h, x, ND * sizeof(T), s);
        mark("residual copy");
        cuda::matmul_forward<T>(blas_, h, attn, w + p.wo, N, A, D, true);
        mark("gemm wo");
        cuda::rmsnorm_forward<T>(fnorm, at<float>(arena_, base + l.frstd), h, w + p.ffn_norm, N, D,
                                 eps, s);
        mark("rmsnorm");
        cuda::matmul_forward<T>(blas_, h13, fnorm, w + p.w1, N, D, 2 * F);
        mark("gemm w1|w3");
        cuda::swiglu_forward_vec<T>(gate, h13, N, F, s);
        mark("swiglu");
        copy_async(x_next, h, ND * sizeof(T), s);
        mark("residual copy");
        cuda::matmul_forward<T>(blas_, x_next, gate, w + p.w2, N, F, D, true);
        mark("gemm w2");
    }
    const std::size_t fin = l.size * args_.n_layers;
    const std::size_t nd_bytes = align256(maxN * D * sizeof(T));
    cuda::rmsnorm_forward<T>(at<T>(arena_, fin + nd_bytes), at<float>(arena_, fin + 2 * nd_bytes),
                             at<T>(arena_, fin), w + off_norm_, N, D, eps, s);
    mark("rmsnorm");
}

template <typename T>
void TransformerGpu::head_impl(int N, double grad_scale, bool backward) {
    const int D = args_.dim, V = args_.vocab_size;
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    const ActLayout l = act_layout(args_, maxN, sizeof(T));
    const GradLayout g = grad_layout(args_, maxN, sizeof(T));
    const cudaStream_t s = blas_.stream();
    const T* w = std::is_same_v<T, float> ? reinterpret_cast<const T*>(params_.data())
                                          : reinterpret_cast<const T*>(params_bf16_.data());
    const std::size_t fin = l.size * args_.n_layers;
    const T* xf_norm = at<T>(arena_, fin + align256(maxN * D * sizeof(T)));
    T* d_xf = backward ? at<T>(dacts_, g.dnorm) : nullptr;
    if (d_xf) memset_async(d_xf, static_cast<std::size_t>(N) * D * sizeof(T), s);
    mark("memset");
    float* dw = backward ? grads_.data() + off_output_ : nullptr;
    if constexpr (std::is_same_v<T, bf16>)
        // bf16 logits, as autocast computes them: half the head's memory traffic.
        cuda::lm_head_cross_entropy_bf16_logits(
            blas_, losses_.data(), d_xf, dw, xf_norm, w + off_output_, targets_.data(), N, D, V,
            static_cast<float>(grad_scale), scratch_.data(), head_chunk_);
    else
        cuda::lm_head_cross_entropy<T>(blas_, losses_.data(), d_xf, dw, xf_norm, w + off_output_,
                                       targets_.data(), N, D, V, static_cast<float>(grad_scale),
                                       scratch_.data(), head_chunk_, 0.0f);
    mark("lm head + cross-entropy");
}

template <typename T>
void TransformerGpu::backward_impl(int B, int T_len) {
    const int N = B * T_len, D = args_.dim, F = args_.ffn_hidden(), Q = args_.qkv_dim(),
              H = args_.n_heads, KV = args_.n_kv_heads, hd = args_.head_dim(), A = H * hd;
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    const ActLayout l = act_layout(args_, maxN, sizeof(T));
    const GradLayout gl = grad_layout(args_, maxN, sizeof(T));
    const cudaStream_t s = blas_.stream();
    const T* w = std::is_same_v<T, float> ? reinterpret_cast<const T*>(params_.data())
                                          : reinterpret_cast<const T*>(params_bf16_.data());
    float* g = grads_.data();
    T* dres = at<T>(dacts_, gl.dres);
    T* d_norm = at<T>(dacts_, gl.dnorm);  // the head wrote d(final norm output) here
    T* d_gate = at<T>(dacts_, gl.dgate);
    T* d_h13 = at<T>(dacts_, gl.dh13);
    T* d_attn = at<T>(dacts_, gl.dattn);
    T* d_qkv = at<T>(dacts_, gl.dqkv);
    const std::size_t ND = static_cast<std::size_t>(N) * D;

    const std::size_t fin = l.size * args_.n_layers;
    const std::size_t nd_bytes = align256(maxN * D * sizeof(T));
    memset_async(dres, ND * sizeof(T), s);
    mark("memset");
    cuda::rmsnorm_backward_vec<T>(dres, g + off_norm_, d_norm, at<T>(arena_, fin), w + off_norm_,
                                  at<float>(arena_, fin + 2 * nd_bytes), N, D, s);
    mark("rmsnorm backward");
    for (int layer = args_.n_layers - 1; layer >= 0; layer--) {
        const std::size_t base = l.size * layer;
        const LayerOffsets& p = layer_offsets_[layer];
        // FFN: x_next = h + w2(swiglu(w1|w3 · ffn_norm(h)))
        linear_backward<T>(blas_, d_gate, g + p.w2, dres, at<T>(arena_, base + l.gate), w + p.w2, N,
                           F, D);
        mark("gemm w2 backward");
        cuda::swiglu_backward_overwrite<T>(d_h13, d_gate, at<T>(arena_, base + l.h13), N, F, s);
        mark("swiglu backward");
        linear_backward<T>(blas_, d_norm, g + p.w1, d_h13, at<T>(arena_, base + l.fnorm), w + p.w1,
                           N, D, 2 * F);
        mark("gemm w1|w3 backward");
        cuda::rmsnorm_backward_vec<T>(dres, g + p.ffn_norm, d_norm, at<T>(arena_, base + l.h),
                                      w + p.ffn_norm, at<float>(arena_, base + l.frstd), N, D, s);
        mark("rmsnorm backward");
        // Attention: h = x + wo · attn(rope(wqkv · attention_norm(x)))
        linear_backward<T>(blas_, d_attn, g + p.wo, dres, at<T>(arena_, base + l.attn), w + p.wo, N,
                           A, D);
        mark("gemm wo backward");
        memset_async(d_qkv, static_cast<std::size_t>(N) * Q * sizeof(T), s);
        mark("memset");
        cuda::attention_backward<T>(d_qkv, d_attn, at<T>(arena_, base + l.qkv),
                                    at<T>(arena_, base + l.attn), at<float>(arena_, base + l.lse),
                                    B, T_len, H, KV, hd, 0.0f, s);
        mark("attention backward");
        cuda::rope_backward_vec<T>(d_qkv, rope_cos_.data(), rope_sin_.data(), B, T_len, H + KV, hd,
                                   Q, s);
        mark("rope backward");
        linear_backward<T>(blas_, d_norm, g + p.wq, d_qkv, at<T>(arena_, base + l.anorm), w + p.wq,
                           N, D, Q);
        mark("gemm qkv backward");
        cuda::rmsnorm_backward_vec<T>(dres, g + p.attention_norm, d_norm, at<T>(arena_, base + l.x),
                                      w + p.attention_norm, at<float>(arena_, base + l.arstd), N, D,
                                      s);
        mark("rmsnorm backward");
    }
    cuda::embedding_backward<T>(g + off_tok_, dres, tokens_.data(), N, D, s);
    mark("embedding backward");
}

template <typename T>
void TransformerGpu::logits_impl(int N, float* out_device) {
    const int D = args_.dim, V = args_.vocab_size;
    const std::size_t maxN = static_cast<std::size_t>(max_batch_) * max_seq_;
    const ActLayout l = act_layout(args_, maxN, sizeof(T));
    const T* w = std::is_same_v<T, float> ? reinterpret_cast<const T*>(params_.data())
                                          : reinterpret_cast<const T*>(params_bf16_.data());
    const std::size_t fin = l.size * args_.n_layers;
    const T* xf_norm = at<T>(arena_, fin + align256(maxN * D * sizeof(T)));
    cuda::matmul_forward<T, float>(blas_, out_device, xf_norm, w + off_output_, N, D, V);
}

void TransformerGpu::run_forward_backward(const int32_t* tokens, const int32_t* targets, int B,
                                          int T, double grad_scale) {
    upload_batch(tokens, targets, B, T);
    mark("token upload");
    const int N = B * T;
    if (precision_ == GpuPrecision::bf16) {
        forward_impl<bf16>(B, T);
        head_impl<bf16>(N, grad_scale, true);
        backward_impl<bf16>(B, T);
    } else {
        forward_impl<float>(B, T);
        head_impl<float>(N, grad_scale, true);
        backward_impl<float>(B, T);
    }
}

void TransformerGpu::forward_backward_async(const int32_t* tokens, const int32_t* targets, int B,
                                            int T, double grad_scale) {
    run_forward_backward(tokens, targets, B, T, grad_scale);
    cuda::accumulate_sum(scalars_.data(), losses_.data(), B * T, blas_.stream());
    mark("loss sum");
}

double TransformerGpu::forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                                        double grad_scale) {
    run_forward_backward(tokens, targets, B, T, grad_scale);
    return cuda::sum_losses(losses_.data(), B * T, blas_.stream());
}

double TransformerGpu::take_loss_sum() {
    const cudaStream_t s = blas_.stream();
    double host = 0.0;
    AGPT_CUDA_CHECK(
        cudaMemcpyAsync(&host, scalars_.data(), sizeof host, cudaMemcpyDeviceToHost, s));
    AGPT_CUDA_CHECK(cudaStreamSynchronize(s));
    memset_async(scalars_.data(), sizeof(double), s);
    return host;
}

double TransformerGpu::forward_loss(const int32_t* tokens, const int32_t* targets, int B, int T) {
    upload_batch(tokens, targets, B, T);
    const int N = B * T;
    if (precision_ == GpuPrecision::bf16) {
        forward_impl<bf16>(B, T);
        head_impl<bf16>(N, 0.0, false);
    } else {
        forward_impl<float>(B, T);
        head_impl<float>(N, 0.0, false);
    }
    return cuda::sum_losses(losses_.data(), N, blas_.stream());
}

void TransformerGpu::forward_logits(const int32_t* tokens, int B, int T, float* host_out) {
    upload_batch(tokens, nullptr, B, T);
    const int N = B * T;
    cuda::DeviceBuffer<float> logits(static_cast<std::size_t>(N) * args_.vocab_size);
    if (precision_ == GpuPrecision::bf16) {
        forward_impl<bf16>(B, T);
        logits_impl<bf16>(N, logits.data());
    } else {
        forward_impl<float>(B, T);
        logits_impl<float>(N, logits.data());
    }
    download_sync(logits, host_out, blas_.stream());
}

void TransformerGpu::clip_grad_norm_async(double max_norm) {
    cuda::grad_norm_clip(grads_.data(), n_params_, max_norm, scalars_.data() + 1, scratch_.data(),
                         blas_.stream());
}

double TransformerGpu::last_grad_norm() const {
    double host = 0.0;
    AGPT_CUDA_CHECK(cudaMemcpyAsync(&host, scalars_.data() + 1, sizeof host, cudaMemcpyDeviceToHost,
                                    blas_.stream()));
    AGPT_CUDA_CHECK(cudaStreamSynchronize(blas_.stream()));
    return host;
}

double TransformerGpu::clip_grad_norm(double max_norm) {
    clip_grad_norm_async(max_norm);
    return last_grad_norm();
}

}  // namespace agpt

#endif  // AGPT_HAVE_CUDA
