#pragma once
// Hugging Face Llama folders (config.json + model.safetensors), out and in.
//
// agpt's block is Llama's, its RoPE layout is HF's rotate_half and its parameter names map one
// to one (hf_llama.h), so a LlamaForCausalLM folder is agpt's weights under other names plus a
// config.json describing the shapes.
//
// Architecture switches: a QK-norm model is exactly Qwen3's block (per-head RMSNorm with a
// head_dim weight on q and k before RoPE), so it goes out and comes in as a Qwen3ForCausalLM
// folder (model_type "qwen3", self_attn.q_norm / k_norm). Attention or final soft-capping and
// the ReLU² FFN have no equivalent in either format (Gemma 2's caps come with a different block,
// Llama's MLP is always gated): exporting such a model, or loading an HF folder into one, is
// refused with a message naming the switch. This file owns that config.json: writing it from
// ModelArgs, reading and validating it back, and loading such a folder's weights into a model
// whose ModelArgs it must match (checkpoint.initial_load_path may name an HF folder).
//
// Intended use:
//   write_hf_llama_folder(model, bos, eos, "out.tmp");      // config.json + model.safetensors
//   HfLlamaConfig c = read_hf_llama_config("out/config.json");
//   Transformer m(c.args, 1, 1);
//   load_hf_llama_weights("out", m);                        // bit-exact F32 copy
#include <cstdint>
#include <optional>
#include <string>

#include "model/model_args.h"
#include "model/transformer.h"

namespace agpt {

struct HfLlamaConfig {
    // vocab_size from the config; ffn_hidden_override = intermediate_size; max_seq_len =
    // max_position_embeddings.
    ModelArgs args;
    bool tie_word_embeddings = false;
    std::optional<int32_t> bos_token_id, eos_token_id;
};

// Throws Error naming the switch when args use a switch no HF format here can express
// (soft-capping, ReLU²).
void check_hf_expressible(const ModelArgs& args);

// config.json text for a LlamaForCausalLM (Qwen3ForCausalLM when args.qk_norm) with these
// hyper-parameters (fp32, untied head). Throws as check_hf_expressible.
std::string hf_llama_config_json(const ModelArgs& args, std::optional<int32_t> bos_token_id,
                                 std::optional<int32_t> eos_token_id);

// Reads and validates a config.json. Throws Error naming the file and the key for a missing or
// mistyped key, a model_type other than "llama" or "qwen3" (which sets args.qk_norm),
// inconsistent head counts, rope_scaling, biases, a sliding window or an activation other than
// silu.
HfLlamaConfig read_hf_llama_config(const std::string& config_json_path);

// True when dir holds config.json and no agpt manifest.json (an HF folder, not a checkpoint).
bool is_hf_llama_folder(const std::string& dir);

// Writes the model's parameters under HF names (F32) into a safetensors file.
void write_hf_llama_safetensors(Transformer& model, const std::string& path);

// Writes config.json and model.safetensors (HF names, F32) into the existing folder dir.
void write_hf_llama_folder(Transformer& model, std::optional<int32_t> bos_token_id,
                           std::optional<int32_t> eos_token_id, const std::string& dir);

// Loads dir/model.safetensors into model after checking that dir/config.json describes
// model.args() (naming the first key that differs). Every tensor is shape-checked; F32 copies
// are bit-exact, F64 is rounded; a tied config fills lm_head from the embedding. The model is
// untouched unless everything checked out.
void load_hf_llama_weights(const std::string& dir, Transformer& model);

}  // namespace agpt
