#pragma once
#include <optional>
#include <string>
#include <vector>

#include "kernels/cpu/router.h"
// The agpt model's hyper-parameters and the registry of named flavors (design.md's table plus
// small flavors sized for a laptop-class CPU), each also with the architecture-switch suffixes
// (`_qknorm`, `_softcap`, `_qknorm_softcap`, `_relu2`, `_kitchen_sink`).
//
// Intended use:
//   ModelArgs a = resolve_model_args("debugmodel_kitchen_sink", {});   // flavor + suffix
//   ModelArgs b = resolve_model_args("tiny", {.qk_norm = true, .attn_softcap = 30});
namespace agpt {

// The FFN of every block: SwiGLU `w2(silu(w1 x) ⊙ w3 x)` or ReLU² `w2(relu(w1 x)²)` (no w3).
enum class FfnType { swiglu, relu2 };
const char* ffn_type_name(FfnType t);  // "swiglu" | "relu2"
std::optional<FfnType> parse_ffn_type(const std::string& s);

struct ModelArgs {
    int dim = 256;
    int n_layers = 6;
    int n_heads = 16;
    int n_kv_heads = 16;
    int vocab_size = 32000;
    // FFN width: torchtitan's rule from dim, ffn_dim_multiplier and multiple_of, unless
    // ffn_hidden_override > 0 (then the SwiGLU width is the override).
    double ffn_dim_multiplier = 0.0;  // 0: none
    int multiple_of = 256;
    int ffn_hidden_override = 0;
    double rope_theta = 500000.0;
    double norm_eps = 1e-5;
    int max_seq_len = 8192;

    // Architecture switches (design.md's variants; off by default).
    bool qk_norm = false;        // RMSNorm (learned weight of head_dim) on q and k per head,
                                 // before RoPE; eps = norm_eps
    double attn_softcap = 0.0;   // c > 0: attention logits s = q·k/√hd become c·tanh(s/c)
    double final_softcap = 0.0;  // c > 0: LM-head logits z become c·tanh(z/c)
    FfnType ffn = FfnType::swiglu;

    // Multi-head latent attention (model/mla.h) instead of grouped-query attention.
    bool mla = false;
    int q_lora_rank = 0;  // 0: a plain wq projection
    int kv_lora_rank = 0;
    int qk_nope_head_dim = 0;
    int qk_rope_head_dim = 0;
    int v_head_dim = 0;
    // YaRN, active when max_seq_len > original_seq_len (DeepSeek-V3's values).
    int original_seq_len = 4096;
    double rope_factor = 40.0;
    int beta_fast = 32;
    int beta_slow = 1;
    double mscale = 1.0;

    // Mixture of experts (model/moe.h): layers from n_dense_layers on have n_experts routed
    // experts of width moe_hidden (top_k per token) and n_shared_experts shared ones; the dense
    // layers before them use the FFN width above. n_experts = 0: a dense model.
    int n_experts = 0;
    int n_shared_experts = 0;
    int top_k = 0;
    int moe_hidden = 0;
    int n_dense_layers = 0;
    cpu::RouterOptions router;
    double load_balance_coeff = 1e-3;  // aux-loss-free bias step; 0: no balancing
    double aux_loss_alpha = 0.0;       // sequence-level auxiliary loss weight; 0: off

    bool is_moe() const { return n_experts > 0; }
    bool is_moe_layer(int layer) const { return is_moe() && layer >= n_dense_layers; }
    int n_moe_layers() const { return is_moe() ? n_layers - n_dense_layers : 0; }
    // Parameters one token uses: all but the (n_experts - top_k) routed experts it skips.
    long num_active_params() const;
    // One MLA/MoE layer's attention and FFN parameter counts.
    long attention_params() const;
    long moe_ffn_params() const;
    long expert_params() const { return 3L * dim * moe_hidden; }

    int head_dim() const { return dim / n_heads; }
    // The SwiGLU width of this shape (torchtitan's rule or the override).
    int swiglu_hidden() const;
    // The width the FFN uses: swiglu_hidden() for SwiGLU; for ReLU², 3/2 of it rounded up to
    // multiple_of, so that the two-matrix ReLU² FFN has the parameters and FLOPs of the
    // three-matrix SwiGLU one it replaces (up to the rounding).
    int ffn_hidden() const;
    // Rows of the first FFN projection: w1|w3 fused (2F) for SwiGLU, w1 (F) for ReLU².
    int ffn_in_dim() const { return ffn == FfnType::swiglu ? 2 * ffn_hidden() : ffn_hidden(); }
    int qkv_dim() const { return (n_heads + 2 * n_kv_heads) * head_dim(); }
    long num_params() const;
    long num_embedding_params() const { return static_cast<long>(vocab_size) * dim; }
    // Training FLOPs per token, design.md's formula: 6·(N − N_embedding) + 12·L·H·hd·T, with
    // N the active parameters (MoE) and, for MLA, hd the mean of the q·k and v head sizes.
    double flops_per_token(int seq_len) const;
    // Whether any switch is on (the plain Llama block otherwise).
    bool has_switches() const {
        return qk_norm || attn_softcap > 0 || final_softcap > 0 || ffn != FfnType::swiglu;
    }
    // "qk_norm, attn_softcap 30, ffn relu2" ("none" when no switch is on).
    std::string describe_switches() const;
};

struct Flavor {
    std::string name;
    std::string description;
    ModelArgs args;
};

// Every flavor: each base flavor followed by its suffix variants (base, base_qknorm,
// base_softcap, base_qknorm_softcap, base_relu2, base_kitchen_sink).
const std::vector<Flavor>& agpt_flavors();
// The MLA/MoE flavors alone (also part of agpt_flavors(), after the dense ones; they take no
// suffixes).
const std::vector<Flavor>& moe_flavors();
// nullptr when unknown.
const Flavor* find_flavor(const std::string& name);

// The flavor suffixes and what they switch on (docs/architecture.md):
//   _qknorm          qk_norm
//   _softcap         attn_softcap = 30 (the AuroraGPT runs' cap; final_softcap stays off)
//   _qknorm_softcap  qk_norm, attn_softcap = 30
//   _relu2           ffn = relu2
//   _kitchen_sink    qk_norm, attn_softcap = 30, ffn = relu2
constexpr double kFlavorSoftcap = 30.0;
struct FlavorSuffix {
    const char* suffix;  // "_qknorm", ...
    const char* description;
    bool qk_norm;
    double attn_softcap;
    FfnType ffn;
};
const std::vector<FlavorSuffix>& flavor_suffixes();

// The job config's model switches (keys model.qk_norm, model.attn_softcap,
// model.final_softcap, model.ffn). They add to what the flavor name sets: qk_norm = true and
// ffn = relu2 switch the feature on (a suffix that switched it on keeps it on); a cap > 0
// replaces the flavor's cap, 0 keeps the flavor's (none for a flavor without `_softcap`).
struct ModelSwitches {
    bool qk_norm = false;
    double attn_softcap = 0.0;
    double final_softcap = 0.0;
    std::string ffn = "swiglu";
    double aux_loss_alpha = 0.0;  // model.aux_loss_alpha: > 0 replaces the flavor's (MoE only)
};

// The flavor's args with the switches applied. Throws Error for an unknown flavor, a negative
// or non-finite cap or an unknown ffn.
ModelArgs resolve_model_args(const std::string& flavor, const ModelSwitches& switches);

}  // namespace agpt
