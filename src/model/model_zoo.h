#pragma once
// The model families `model.name` selects — "agpt" (the Llama-style transformer with its
// switches) and "gpt2" (llm.c's model) — and the one place a LanguageModel is built from a
// family, a flavor and the tokenizer's vocabulary.
#include <memory>
#include <string>
#include <vector>

#include "model/language_model.h"
#include "model/model_args.h"

namespace agpt {

const std::vector<std::string>& model_families();
// The flavor names of a family, in listing order (empty for an unknown family).
std::vector<std::string> family_flavors(const std::string& family);
// The initialisation schemes a family accepts, its default first.
std::vector<std::string> family_init_schemes(const std::string& family);

// A model of the family's flavor with the switches applied (agpt only) and the vocabulary set
// to vocab_size, as torchtitan does: the tokenizer decides it (0 keeps the flavor's). Activations
// are sized for (max_batch, max_seq). Throws Error for an unknown family or flavor, or for switches
// or activation checkpointing on a family without them (gpt2).
std::unique_ptr<LanguageModel> make_language_model(
    const std::string& family, const std::string& flavor, const ModelSwitches& switches,
    int vocab_size, int max_batch, int max_seq,
    ActivationCheckpoint checkpoint = ActivationCheckpoint::none);

// `activation_checkpoint.mode` ("none" | "full"); throws Error naming the key otherwise.
ActivationCheckpoint activation_checkpoint_from(const std::string& mode);

// "agpt/small: 12.34M params | dim 256 layers 4 heads 8/4 ffn 768 vocab 258" for run logs.
std::string describe_model(const LanguageModel& model, const std::string& family,
                           const std::string& flavor);

}  // namespace agpt
