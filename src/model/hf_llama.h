#pragma once
#include <string>
// Names of agpt parameters in Hugging Face's LlamaForCausalLM (and, for QK-norm's q_norm/k_norm,
// Qwen3ForCausalLM). The RoPE layout is already HF's (rotate_half), so weights map one to one
// with no q/k permutation. Checkpoints use these names too, whatever the model's switches.
namespace agpt {

// "layers.3.attention.wq.weight" -> "model.layers.3.self_attn.q_proj.weight". Throws Error for
// a name with no Llama counterpart.
std::string hf_llama_name(const std::string& agpt_name);

}  // namespace agpt
