#pragma once
// Gpt2 weights in safetensors files: every parameter under its own name (gpt2.h: Hugging Face
// GPT2Model names), F32, in agpt's shapes — matrices (out, in) and wte with its padding rows —
// plus metadata describing the model ("agpt.model" = "gpt2", "gpt2.dim", "gpt2.n_layers",
// "gpt2.n_heads", "gpt2.vocab_size", "gpt2.padded_vocab_size", "gpt2.max_seq_len",
// "gpt2.norm_eps") so that a folder written by `agpt import --llmc` describes itself.
//
// Intended use:
//   write_gpt2_safetensors(gpt2_param_views(args), params.data(), args, "model.safetensors");
//   SafetensorsFile f("model.safetensors");
//   Gpt2 model(gpt2_args_from_metadata(f), 1, 1);
//   read_gpt2_weights(f, model);                        // bit-exact F32 copy
#include <map>
#include <string>
#include <vector>

#include "core/safetensors.h"
#include "model/gpt2.h"

namespace agpt {

// Writes params (laid out as views) and args' metadata, plus `extra` metadata, to path.
void write_gpt2_safetensors(const std::vector<ParamView>& views, const float* params,
                            const Gpt2Args& args, const std::string& path,
                            const std::map<std::string, std::string>& extra = {});

// The Gpt2Args recorded in a file's metadata. Throws Error naming the file when it is not a
// gpt2 file or a key is missing or malformed.
Gpt2Args gpt2_args_from_metadata(const SafetensorsFile& file);

// Copies every parameter of model from file (F32, shapes checked against the model's views).
// Throws Error naming the file and the tensor; the model is untouched unless all checked out.
void read_gpt2_weights(const SafetensorsFile& file, Gpt2& model);

}  // namespace agpt
