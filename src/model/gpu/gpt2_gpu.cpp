// GPT-2 on the GPU (gpt2_gpu.h). Compiled into agpt_lib by its source glob, so the whole file is
// empty without the CUDA backend.
#if defined(AGPT_HAVE_CUDA)

#include "model/gpu/gpt2_gpu.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/bias.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/layernorm.h"

namespace agpt {

using cuda::bf16;
using namespace gpu_detail;

namespace {

Gpt2Args checked(const Gpt2Args& a, int max_seq) {
    if (a.dim <= 0 || a.n_layers <= 0 || a.n_heads <= 0 || a.vocab_size <= 0 || a.max_seq_len <= 0)
        fail(
            "gpt2: dim {}, n_layers {}, n_heads {}, vocab_size {} and max_seq_len {} must be "
            "positive",
            a.dim, a.n_layers, a.n_heads, a.vocab_size, a.max_seq_len);
    if (a.dim % a.n_heads != 0)
        fail("gpt2: dim {} is not divisible by n_heads {}", a.dim, a.n_heads);
    if (a.head_dim() > 128) fail("gpt2: head_dim {} is above 128 (cuda)", a.head_dim());
    if (a.padded_vocab() < a.vocab_size)
        fail("gpt2: padded_vocab_size {} is smaller than vocab_size {}", a.padded_vocab(),
             a.vocab_size);
    if (max_seq > a.max_seq_len)
        fail("gpt2: sequence length {} exceeds the model's context {} (rows of wpe)", max_seq,
             a.max_seq_len);
    return a;
}

}  // namespace

Gpt2Gpu::Gpt2Gpu(const Gpt2Args& args, int max_batch, int max_seq, GpuPrecision precision,
                 cudaStream_t stream)
    : GpuModelBase(gpt2_param_views(checked(args, max_seq)), args.vocab_size, max_batch, max_seq,
                   precision, stream),
      args_(args) {
    wte_ = view("wte.weight").offset;
    wpe_ = view("wpe.weight").offset;
    for (int i = 0; i < args.n_layers; i++) {
        const std::string p = "h." + std::to_string(i) + ".";
        LayerOffsets o;
        o.ln1_w = view(p + "ln_1.weight").offset;
        o.ln1_b = view(p + "ln_1.bias").offset;
        o.attn_w = view(p + "attn.c_attn.weight").offset;
        o.attn_b = view(p + "attn.c_attn.bias").offset;
        o.proj_w = view(p + "attn.c_proj.weight").offset;
        o.proj_b = view(p + "attn.c_proj.bias").offset;
        o.ln2_w = view(p + "ln_2.weight").offset;
        o.ln2_b = view(p + "ln_2.bias").offset;
        o.fc_w = view(p + "mlp.c_fc.weight").offset;
        o.fc_b = view(p + "mlp.c_fc.bias").offset;
        o.fcproj_w = view(p + "mlp.c_proj.weight").offset;
        o.fcproj_b = view(p + "mlp.c_proj.bias").offset;
        layers_.push_back(o);
    }
    lnf_w_ = view("ln_f.weight").offset;
    lnf_b_ = view("ln_f.bias").offset;

    const std::size_t N = max_tokens();
    const std::size_t es = precision == GpuPrecision::bf16 ? sizeof(bf16) : sizeof(float);
    arena_ = cuda::DeviceBuffer<unsigned char>(gpt2_act_layout(args, N, es).size * args.n_layers +
                                               gpt2_final_layout(args, N, es).size);
    dacts_ = cuda::DeviceBuffer<unsigned char>(gpt2_grad_layout(args, N, es).size);
}

std::size_t Gpt2Gpu::activation_bytes() const {
    return arena_.bytes() + dacts_.bytes() + common_activation_bytes();
}

template <typename T>
void Gpt2Gpu::forward_impl(int B, int T_len) {
    const int N = B * T_len, C = args_.dim, F = args_.ffn_hidden(), H = args_.n_heads,
              hd = args_.head_dim();
    const float eps = static_cast<float>(args_.norm_eps);
    const Gpt2ActLayout l = gpt2_act_layout(args_, max_tokens(), sizeof(T));
    const Gpt2FinalLayout fl = gpt2_final_layout(args_, max_tokens(), sizeof(T));
    const cudaStream_t s = blas_.stream();
    const T* w = weights<T>();

    // x = wte[tokens] + wpe[0..T): wpe's first T rows are one T·C bias on each sequence.
    T* x0 = at<T>(arena_, l.x);
    cuda::embedding_forward<T>(x0, tokens_.data(), w + wte_, N, C, s);
    mark("embedding");
    cuda::bias_forward<T>(x0, x0, w + wpe_, B, T_len * C, s);
    mark("position embedding");
    const std::size_t fin = l.size * args_.n_layers;
    for (int layer = 0; layer < args_.n_layers; layer++) {
        const std::size_t base = l.size * layer;
        const LayerOffsets& p = layers_[layer];
        T* x = at<T>(arena_, base + l.x);
        T* ln1 = at<T>(arena_, base + l.ln1);
        T* qkv = at<T>(arena_, base + l.qkv);
        T* atty = at<T>(arena_, base + l.atty);
        T* h = at<T>(arena_, base + l.h);
        T* ln2 = at<T>(arena_, base + l.ln2);
        T* fch = at<T>(arena_, base + l.fch);
        T* fch_gelu = at<T>(arena_, base + l.fch_gelu);
        // The next layer's x, or the final residual stream (it follows the last layer).
        T* x_next = at<T>(arena_, layer + 1 < args_.n_layers ? base + l.size + l.x : fin + fl.x);
        // h = x + c_proj(attn(c_attn(ln_1(x))))
        cuda::layernorm_forward<T>(ln1, at<float>(arena_, base + l.ln1_mean),
                                   at<float>(arena_, base + l.ln1_rstd), x, w + p.ln1_w,
                                   w + p.ln1_b, N, C, eps, s);
        mark("layernorm");
        cuda::matmul_forward_bias<T>(blas_, qkv, ln1, w + p.attn_w, w + p.attn_b, nullptr, N, C,
                                     3 * C);
        mark("gemm c_attn + bias");
        cuda::attention_forward<T>(atty, at<float>(arena_, base + l.lse), qkv, B, T_len, H, H, hd,
                                   0.0f, s);
        mark("attention");
        cuda::matmul_forward_bias<T>(blas_, h, atty, w + p.proj_w, w + p.proj_b, x, N, C, C);
        mark("gemm attn.c_proj + bias + residual");
        // x_next = h + mlp.c_proj(gelu(c_fc(ln_2(h))))
        cuda::layernorm_forward<T>(ln2, at<float>(arena_, base + l.ln2_mean),
                                   at<float>(arena_, base + l.ln2_rstd), h, w + p.ln2_w,
                                   w + p.ln2_b, N, C, eps, s);
        mark("layernorm");
        cuda::matmul_forward_bias_gelu<T>(blas_, fch_gelu, fch, ln2, w + p.fc_w, w + p.fc_b, N, C,
                                          F);
        mark("gemm c_fc + bias + gelu");
        cuda::matmul_forward_bias<T>(blas_, x_next, fch_gelu, w + p.fcproj_w, w + p.fcproj_b, h, N,
                                     F, C);
        mark("gemm mlp.c_proj + bias + residual");
    }
    cuda::layernorm_forward<T>(at<T>(arena_, fin + fl.lnf), at<float>(arena_, fin + fl.mean),
                               at<float>(arena_, fin + fl.rstd), at<T>(arena_, fin + fl.x),
                               w + lnf_w_, w + lnf_b_, N, C, eps, s);
    mark("layernorm");
}

template <typename T>
void Gpt2Gpu::backward_impl(int B, int T_len) {
    const int N = B * T_len, C = args_.dim, F = args_.ffn_hidden(), H = args_.n_heads,
              hd = args_.head_dim();
    const Gpt2ActLayout l = gpt2_act_layout(args_, max_tokens(), sizeof(T));
    const Gpt2FinalLayout fl = gpt2_final_layout(args_, max_tokens(), sizeof(T));
    const BlockGradLayout gl = gpt2_grad_layout(args_, max_tokens(), sizeof(T));
    const cudaStream_t s = blas_.stream();
    const T* w = weights<T>();
    float* g = grads_.data();
    T* dres = at<T>(dacts_, gl.dres);
    T* d_norm = at<T>(dacts_, gl.dnorm);  // the head wrote d(ln_f output) here
    T* d_fch = at<T>(dacts_, gl.dffn_pre);
    T* d_atty = at<T>(dacts_, gl.dattn);
    T* d_qkv = at<T>(dacts_, gl.dqkv);
    const std::size_t NC = static_cast<std::size_t>(N) * C;

    const std::size_t fin = l.size * args_.n_layers;
    memset_async(dres, NC * sizeof(T), s);
    mark("memset");
    // Each LayerNorm backward also sums the residual gradient it leaves over the rows: the bias
    // gradient of the projection that last added to that residual (the last layer's
    // mlp.c_proj here, attn.c_proj after ln_2, the layer below's mlp.c_proj after ln_1).
    cuda::layernorm_backward<T>(dres, g + lnf_w_, g + lnf_b_, d_norm, at<T>(arena_, fin + fl.x),
                                w + lnf_w_, at<float>(arena_, fin + fl.mean),
                                at<float>(arena_, fin + fl.rstd), N, C, s,
                                g + layers_.back().fcproj_b);
    mark("layernorm backward + mlp.c_proj bias backward");
    for (int layer = args_.n_layers - 1; layer >= 0; layer--) {
        const std::size_t base = l.size * layer;
        const LayerOffsets& p = layers_[layer];
        // MLP: x_next = h + fcproj_b + fcproj_w · gelu(fc_w · ln_2(h) + fc_b); the GELU's
        // gradient and fc_b's are the input-gradient GEMM's epilogue.
        cuda::matmul_backward_dgelu<T>(blas_, d_fch, dres, w + p.fcproj_w,
                                       at<T>(arena_, base + l.fch), N, F, C, g + p.fc_b);
        cuda::matmul_backward<T, float>(blas_, nullptr, g + p.fcproj_w, dres,
                                        at<T>(arena_, base + l.fch_gelu), w + p.fcproj_w, N, F, C);
        mark("gemm mlp.c_proj backward + gelu and c_fc bias backward");
        linear_backward<T>(blas_, d_norm, g + p.fc_w, d_fch, at<T>(arena_, base + l.ln2),
                           w + p.fc_w, N, C, F);
        mark("gemm c_fc backward");
        cuda::layernorm_backward<T>(dres, g + p.ln2_w, g + p.ln2_b, d_norm,
                                    at<T>(arena_, base + l.h), w + p.ln2_w,
                                    at<float>(arena_, base + l.ln2_mean),
                                    at<float>(arena_, base + l.ln2_rstd), N, C, s, g + p.proj_b);
        mark("layernorm backward + attn.c_proj bias backward");
        // Attention: h = x + proj_b + proj_w · attn(attn_w · ln_1(x) + attn_b)
        linear_backward<T>(blas_, d_atty, g + p.proj_w, dres, at<T>(arena_, base + l.atty),
                           w + p.proj_w, N, C, C);
        mark("gemm attn.c_proj backward");
        cuda::attention_backward<T>(d_qkv, d_atty, at<T>(arena_, base + l.qkv),
                                    at<T>(arena_, base + l.atty), at<float>(arena_, base + l.lse),
                                    B, T_len, H, H, hd, 0.0f, s);
        mark("attention backward");
        linear_backward<T>(blas_, d_norm, g + p.attn_w, d_qkv, at<T>(arena_, base + l.ln1),
                           w + p.attn_w, N, C, 3 * C, g + p.attn_b);
        mark("gemm c_attn backward (+ bias backward)");
        cuda::layernorm_backward<T>(
            dres, g + p.ln1_w, g + p.ln1_b, d_norm, at<T>(arena_, base + l.x), w + p.ln1_w,
            at<float>(arena_, base + l.ln1_mean), at<float>(arena_, base + l.ln1_rstd), N, C, s,
            layer > 0 ? g + layers_[layer - 1].fcproj_b : nullptr);
        mark("layernorm backward");
    }
    // wte's gradient already holds the tied head's; the lookup's adds to it.
    cuda::embedding_backward<T>(g + wte_, dres, tokens_.data(), N, C, s);
    mark("embedding backward");
    cuda::bias_backward<T>(g + wpe_, dres, B, T_len * C, s);
    mark("position embedding backward");
}

void Gpt2Gpu::forward(int B, int T, bool /*training*/) {
    if (precision_ == GpuPrecision::bf16)
        forward_impl<bf16>(B, T);
    else
        forward_impl<float>(B, T);
}

void Gpt2Gpu::backward(int B, int T, double /*grad_scale*/) {
    if (precision_ == GpuPrecision::bf16)
        backward_impl<bf16>(B, T);
    else
        backward_impl<float>(B, T);
}

template <typename T>
T* Gpt2Gpu::final_norm_output() {
    const std::size_t maxN = max_tokens();
    return at<T>(arena_, gpt2_act_layout(args_, maxN, sizeof(T)).size * args_.n_layers +
                             gpt2_final_layout(args_, maxN, sizeof(T)).lnf);
}

template <typename T>
void Gpt2Gpu::head_impl(int N, double grad_scale, bool backward, const float* row_scale) {
    // The head is wte's first vocab_size rows; its gradient goes into wte's.
    T* dx =
        backward ? at<T>(dacts_, gpt2_grad_layout(args_, max_tokens(), sizeof(T)).dnorm) : nullptr;
    lm_head<T>(final_norm_output<T>(), dx, wte_, N, args_.dim, grad_scale, 0.0f, row_scale);
}

void Gpt2Gpu::head(int N, double grad_scale, bool backward, const float* row_scale) {
    if (precision_ == GpuPrecision::bf16)
        head_impl<bf16>(N, grad_scale, backward, row_scale);
    else
        head_impl<float>(N, grad_scale, backward, row_scale);
}

void Gpt2Gpu::logits(int N, float* out_device) {
    if (precision_ == GpuPrecision::bf16)
        lm_logits<bf16>(final_norm_output<bf16>(), wte_, N, args_.dim, out_device);
    else
        lm_logits<float>(final_norm_output<float>(), wte_, N, args_.dim, out_device);
}

}  // namespace agpt

#endif  // AGPT_HAVE_CUDA
