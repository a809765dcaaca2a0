#pragma once
// llm.c's GPT-2 checkpoints (`agpt import --llmc`, docs/formats.md "llm.c GPT-2 checkpoint"),
// in and out.
//
// The file: a header of 256 little-endian int32 — magic 20240326, version 3, max_seq_len,
// vocab_size, num_layers, num_heads, channels, padded_vocab_size, then zeros — followed by
// every parameter as fp32 in llm.c's order, each tensor stacked over the layers:
//   wte (Vp,C), wpe (maxT,C), ln1w (L,C), ln1b (L,C), qkvw (L,3C,C), qkvb (L,3C),
//   attprojw (L,C,C), attprojb (L,C), ln2w (L,C), ln2b (L,C), fcw (L,4C,C), fcb (L,4C),
//   fcprojw (L,C,4C), fcprojb (L,C), lnfw (C), lnfb (C).
// Each (L, ...) tensor is layer 0's slice, then layer 1's, ...; matrices are (out, in), as
// agpt stores them, and wte keeps its padding rows, so conversion is a reordering.
//
// Intended use:
//   LlmcImportResult r = import_llmc("gpt2_124M.bin", "imported/step-0");
//   std::unique_ptr<Gpt2> m = load_gpt2_model_folder("imported/step-0", B, T);
#include <memory>
#include <string>
#include <vector>

#include "model/gpt2.h"

namespace agpt {

inline constexpr int kLlmcMagic = 20240326;
inline constexpr int kLlmcVersion = 3;

// Reads and checks the header of an llm.c checkpoint: magic, version, positive sizes, channels
// divisible by heads, padded_vocab_size >= vocab_size, and a file length equal to header +
// parameters. Throws one Error line naming the file and what is wrong.
Gpt2Args read_llmc_header(const std::string& path);

// Reads the parameters of a checked checkpoint into params, laid out as gpt2_param_views(args)
// (args as read_llmc_header returned them; params must hold args.num_params() floats).
void read_llmc_params(const std::string& path, const Gpt2Args& args, float* params);

// Writes params (laid out as gpt2_param_views(args)) as an llm.c version-3 checkpoint.
void write_llmc_checkpoint(const Gpt2Args& args, const float* params, const std::string& path);

struct LlmcImportResult {
    Gpt2Args args;       // from the header
    std::string flavor;  // the gpt2 flavor with these shapes; empty when none matches
    long params = 0;     // elements, wte's padding rows included (llm.c's count)
};

// Converts an llm.c checkpoint into out_dir (must not exist), a model-only agpt checkpoint step
// folder: model.safetensors (gpt2_io.h: the parameters under their Hugging Face GPT-2 names
// and the model's shapes in the metadata) and manifest.json. The folder is assembled as
// "<out_dir>.tmp" and renamed, so a failure leaves no out_dir.
LlmcImportResult import_llmc(const std::string& llmc_file, const std::string& out_dir);

// A Gpt2 allocated for (max_batch, max_seq) rows with the weights of a folder import_llmc
// wrote (its manifest, when present, verified; the shapes from model.safetensors' metadata).
// max_seq = 0 takes the model's context.
std::unique_ptr<Gpt2> load_gpt2_model_folder(const std::string& dir, int max_batch, int max_seq);

}  // namespace agpt
