#include "model/hf_llama.h"

#include <array>
#include <utility>

#include "core/error.h"

namespace agpt {

std::string hf_llama_name(const std::string& name) {
    if (name == "tok_embeddings.weight") return "model.embed_tokens.weight";
    if (name == "norm.weight") return "model.norm.weight";
    if (name == "output.weight") return "lm_head.weight";
    // q_norm/k_norm (QK-norm) are Qwen3's names: a Qwen3 block is this block with QK-norm.
    static const std::array<std::pair<const char*, const char*>, 24> per_layer = {{
        {"attention_norm.weight", "input_layernorm.weight"},
        {"attention.wq.weight", "self_attn.q_proj.weight"},
        {"attention.wk.weight", "self_attn.k_proj.weight"},
        {"attention.wv.weight", "self_attn.v_proj.weight"},
        {"attention.wo.weight", "self_attn.o_proj.weight"},
        {"attention.q_norm.weight", "self_attn.q_norm.weight"},
        {"attention.k_norm.weight", "self_attn.k_norm.weight"},
        {"ffn_norm.weight", "post_attention_layernorm.weight"},
        {"feed_forward.w1.weight", "mlp.gate_proj.weight"},
        {"feed_forward.w3.weight", "mlp.up_proj.weight"},
        {"feed_forward.w2.weight", "mlp.down_proj.weight"},
        // MLA and MoE layers in DeepSeek-V3's names; the routed experts stay stacked (E, ·, ·)
        // where Hugging Face stores one tensor per expert (agpt checkpoints, not an HF export).
        {"attention.wq_a.weight", "self_attn.q_a_proj.weight"},
        {"attention.wq_b.weight", "self_attn.q_b_proj.weight"},
        {"attention.wkv_a.weight", "self_attn.kv_a_proj_with_mqa.weight"},
        {"attention.kv_norm.weight", "self_attn.kv_a_layernorm.weight"},
        {"attention.wkv_b.weight", "self_attn.kv_b_proj.weight"},
        {"moe.router.gate.weight", "mlp.gate.weight"},
        {"moe.expert_bias", "mlp.gate.e_score_correction_bias"},
        {"moe.experts.w1", "mlp.experts.gate_proj"},
        {"moe.experts.w3", "mlp.experts.up_proj"},
        {"moe.experts.w2", "mlp.experts.down_proj"},
        {"moe.shared_experts.w1.weight", "mlp.shared_experts.gate_proj.weight"},
        {"moe.shared_experts.w3.weight", "mlp.shared_experts.up_proj.weight"},
        {"moe.shared_experts.w2.weight", "mlp.shared_experts.down_proj.weight"},
    }};
    if (name.starts_with("layers.")) {
        const std::size_t dot = name.find('.', 7);
        if (dot != std::string::npos) {
            const std::string layer = name.substr(7, dot - 7), rest = name.substr(dot + 1);
            for (const auto& [ours, theirs] : per_layer)
                if (rest == ours) return "model.layers." + layer + "." + theirs;
        }
    }
    fail("no Hugging Face Llama name for parameter '{}'", name);
}

}  // namespace agpt
