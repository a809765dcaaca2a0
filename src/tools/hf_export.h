#pragma once
// `agpt export --format hf` and `agpt import --hf`: Hugging Face LlamaForCausalLM folders out of
// a run and back into an agpt checkpoint (docs/formats.md, "Hugging Face export folder").
//
// Export writes config.json, model.safetensors (F32, HF names) and, when the run had a BPE
// tokenizer, its tokenizer.json. Import checks such a folder's config.json and writes a
// model-only checkpoint step folder for checkpoint.initial_load_path; F32 weights round-trip
// bit-exactly.
//
// Intended use:
//   export_run_hf("outputs/default", -1, "hf_out");
//   HfImportResult r = import_hf("hf_out", "imported/step-0");
//   // agpt train --model.flavor <r.flavor> --checkpoint.initial_load_path imported/step-0
#include <functional>
#include <string>

#include "model/model_args.h"

namespace agpt {

struct HfExportResult {
    std::string checkpoint_dir;  // the step folder exported
    int step = 0;
};

// Exports checkpoint `step` (-1: newest) of run_dir into out_dir, which must not exist; the
// folder is assembled as "<out_dir>.tmp" and renamed, so a failure leaves no out_dir.
HfExportResult export_run_hf(const std::string& run_dir, int step, const std::string& out_dir,
                             const std::function<void(const std::string&)>& warn = {});

struct HfImportResult {
    ModelArgs args;         // from config.json
    std::string flavor;     // the built-in flavor with these shapes; empty when none matches
    std::string tokenizer;  // "byte", the copied tokenizer.json, or empty when unknown
};

// The registered flavor whose shapes, rope_theta and norm_eps equal args' (vocab_size aside);
// nullptr when none does.
const Flavor* find_flavor_matching(const ModelArgs& args);

// Reads hf_dir (config.json + model.safetensors [+ tokenizer.json]) and writes out_dir (must
// not exist) as a model-only agpt checkpoint step folder: model.safetensors, manifest.json and,
// when a flavor matches, a config.toml naming it and the tokenizer (the byte tokenizer when
// the vocabulary is its 258 ids, else the folder's tokenizer.json, copied alongside).
HfImportResult import_hf(const std::string& hf_dir, const std::string& out_dir);

}  // namespace agpt
