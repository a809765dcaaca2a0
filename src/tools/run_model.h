#pragma once
// The model of a run folder: its resolved config.toml, its tokenizer and the weights of one of
// its checkpoints, in a Transformer. Export, generation and any later tool that reads a trained
// model go through here, so "which ModelArgs did this run train" is answered in one place.
//
// Intended use:
//   RunModel rm = load_run_model("outputs/default", -1, 1, 1);   // newest checkpoint
//   rm.model->last_logits(...);  rm.tokenizer.decode(...);
#include <functional>
#include <memory>
#include <string>

#include "data/tokenizer.h"
#include "model/transformer.h"
#include "train/config.h"

namespace agpt {

// The model a job config trains: its flavor's arguments with the tokenizer's vocabulary size
// (258 for the byte tokenizer), as the trainer builds it.
ModelArgs run_model_args(const JobConfig& cfg, const Tokenizer& tokenizer);

// The tokenizer a run trained with: <run>/tokenizer.json when the run saved one (BPE runs
// always do), otherwise model.tokenizer of its config ("byte").
Tokenizer run_tokenizer(const std::string& run_dir, const JobConfig& cfg);

struct RunModel {
    std::string run_dir;
    JobConfig config;
    Tokenizer tokenizer;
    std::string checkpoint_dir;  // the step folder loaded
    int step = 0;
    std::unique_ptr<Transformer> model;
    // <run>/tokenizer.json, empty for the byte tokenizer.
    std::string tokenizer_file;
};

// A Hugging Face Llama/Qwen3 folder (config.json + model.safetensors [+ tokenizer.json]) loads
// too, as step 0 of the flavor its shapes match. Otherwise:
// Loads <run>/config.toml, the tokenizer and checkpoint `step` (-1: the newest one that
// verifies; each corrupt one skipped is reported through `warn`) into a Transformer allocated
// for (max_batch, max_seq) rows. Throws Error naming the folder when there is no config or
// no loadable checkpoint.
RunModel load_run_model(const std::string& run_dir, int step, int max_batch, int max_seq,
                        const std::function<void(const std::string&)>& warn = {});

}  // namespace agpt
