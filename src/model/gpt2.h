#pragma once
// GPT-2 (the model llm.c trains), with the same public interface as Transformer: flat parameter
// and gradient buffers with named views, an explicit forward_backward that calls the kernels,
// activations in an arena sized for (max_batch, max_seq).
//
// Architecture (OpenAI GPT-2 / nanoGPT / llm.c):
//   x = wte[tokens] + wpe[positions]                           (learned position embeddings)
//   per layer:  h = x + c_proj(attn(c_attn(ln_1(x))))          (pre-LayerNorm, biases everywhere)
//               x = h + mlp.c_proj(gelu_tanh(mlp.c_fc(ln_2(h))))   (c_fc: dim -> 4·dim)
//   logits = ln_f(x) · wteᵀ                                    (LM head tied to wte)
// LayerNorm has weight and bias, eps 1e-5; c_attn is the fused q|k|v projection (3·dim rows:
// all query heads, then all key heads, then all value heads) and attention is causal
// multi-head softmax(q·kᵀ/√hd)·v.
//
// Parameter names are Hugging Face GPT2Model's ("wte.weight", "h.3.attn.c_attn.weight",
// "ln_f.bias", ...). Matrices are stored (out, in), as nn.Linear and llm.c store them and as
// the gemm kernel reads them; Hugging Face's Conv1D stores the transpose (in, out), so a
// Hugging Face export transposes every *.c_attn/c_proj/c_fc.weight.
//
// Vocabulary padding: wte has padded_vocab() rows (50304 for GPT-2's 50257 tokens, the next
// multiple of 128), as in llm.c's checkpoints, so llm.c import and export copy the table as is.
// Only the first vocab_size rows are real: logits, loss and sampling cover [0, vocab_size);
// the padding rows are initialised to zero and receive no gradient.
//
// Intended use:
//   Gpt2 model(find_gpt2_flavor("124M")->args, B, T);
//   model.init_weights("gpt2", seed);
//   model.zero_grad();
//   double loss_sum = model.forward_backward(tokens, targets, B, T, 1.0 / (B * T));
#include <cstdint>
#include <string>
#include <vector>

#include "model/language_model.h"

namespace agpt {

struct Gpt2Args {
    int dim = 768;
    int n_layers = 12;
    int n_heads = 12;
    int vocab_size = 50257;
    // Rows of wte; 0: vocab_size rounded up to a multiple of 128 (llm.c's rule).
    int padded_vocab_size = 0;
    int max_seq_len = 1024;  // rows of wpe: the longest sequence the model accepts
    double norm_eps = 1e-5;

    int head_dim() const { return dim / n_heads; }
    int ffn_hidden() const { return 4 * dim; }
    int padded_vocab() const;
    // Elements of the parameter buffer (wte counted with its padding rows, as llm.c counts).
    long num_params() const;
    // wte (padded) and wpe.
    long num_embedding_params() const;
    // Training FLOPs per token: 6·(N − N_embedding + V·dim) + 12·L·H·hd·T. The tied head's
    // GEMM is counted once (V·dim) although wte is an embedding.
    double flops_per_token(int seq_len) const;
};

struct Gpt2Flavor {
    std::string name;
    std::string description;
    Gpt2Args args;
};

// 124M, 350M, 774M, 1558M (OpenAI's GPT-2 sizes, vocabulary 50257, context 1024) and
// gpt2_tiny (2 layers, dim 64, 4 heads, vocabulary 512, context 128: tests).
const std::vector<Gpt2Flavor>& gpt2_flavors();
// nullptr when unknown.
const Gpt2Flavor* find_gpt2_flavor(const std::string& name);
// The flavor with args' dim, n_layers and n_heads (vocabulary and context aside); nullptr when
// none.
const Gpt2Flavor* find_gpt2_flavor_matching(const Gpt2Args& args);

// The parameter layout of a Gpt2 with these args (names, offsets into the flat buffer, shapes,
// roles) without allocating a model: wte, wpe, then per layer ln_1, attn.c_attn, attn.c_proj,
// ln_2, mlp.c_fc, mlp.c_proj (each weight, then bias), then ln_f.
std::vector<ParamView> gpt2_param_views(const Gpt2Args& args);

class Gpt2 final : public LanguageModel {
  public:
    Gpt2(const Gpt2Args& args, int max_batch, int max_seq);

    const Gpt2Args& args() const { return args_; }
    // Roles: embedding (wte, wpe), norm (LayerNorm weights), bias (every bias, LayerNorm's
    // included), attention (c_attn, attn.c_proj), ffn (c_fc, mlp.c_proj). No head tensor: the
    // head is wte.
    const std::vector<ParamView>& param_views() const override { return views_; }
    const ParamView& view(const std::string& name) const;  // throws Error when unknown
    std::vector<float>& params() override { return params_; }
    std::vector<float>& grads() override { return grads_; }
    float* param(const std::string& name) { return params_.data() + view(name).offset; }
    float* grad(const std::string& name) { return grads_.data() + view(name).offset; }

    // The views already carry Hugging Face GPT2Model's names.
    std::string checkpoint_name(const std::string& view_name) const override { return view_name; }
    int vocab_size() const override { return args_.vocab_size; }
    long num_params() const override { return args_.num_params(); }
    double flops_per_token(int seq_len) const override { return args_.flops_per_token(seq_len); }
    int max_context() const override { return args_.max_seq_len; }

    // scheme "gpt2": GPT-2's (nanoGPT's, llm.c's) initialisation. Matrices and both embeddings
    // N(0, 0.02), the residual projections attn.c_proj and mlp.c_proj N(0, 0.02/√(2·n_layers)),
    // biases 0, LayerNorm weights 1; wte's padding rows 0.
    void init_weights(const std::string& scheme, uint64_t seed) override;
    void zero_grad() override;

    // tokens and targets (B,T); targets of -1 are not counted. Runs forward and backward and
    // accumulates into grads() the gradient of grad_scale · Σ loss. Returns Σ loss (nats) over
    // counted targets.
    double forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                            double grad_scale) override;
    // Forward only: Σ loss over counted targets.
    double forward_loss(const int32_t* tokens, const int32_t* targets, int B, int T) override;
    // Forward only: logits (B,T,vocab_size) into out.
    void forward_logits(const int32_t* tokens, int B, int T, float* out) override;
    // Logits (vocab_size) of the last position of one sequence of length T (for sampling).
    void last_logits(const int32_t* tokens, int T, float* out) override;

    // Bytes held by activations and scratch (for reporting).
    std::size_t activation_bytes() const override;

  private:
    // Offsets into params_/grads_ of one layer's tensors.
    struct LayerParams {
        std::size_t ln1_w, ln1_b, attn_w, attn_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b,
            fcproj_w, fcproj_b;
    };
    Gpt2Args args_;
    int max_batch_, max_seq_;
    std::vector<ParamView> views_;
    std::vector<LayerParams> layers_;
    std::size_t wte_ = 0, wpe_ = 0, lnf_w_ = 0, lnf_b_ = 0;
    std::vector<float> params_, grads_;
    std::vector<float> acts_;
    std::vector<float> dacts_;
    std::vector<float> scratch_;
    void build_views();
    void forward(const int32_t* tokens, int B, int T);
    double head_loss(const int32_t* targets, int B, int T, double grad_scale, bool backward);
    const float* final_norm_output() const;
};

}  // namespace agpt
