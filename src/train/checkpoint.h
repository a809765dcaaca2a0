#pragma once
// Checkpoints: <run>/<checkpoint.folder>/step-N/ holding
//   model.safetensors      the weights under Hugging Face Llama names (loadable as is)
//   optimizer.safetensors  every optimizer state tensor (Optimizer::state_tensors) under its
//                          own name, and the optimizer's name in the metadata
//   trainer_state.json     step and data-loader position
//   config.toml            the resolved job config
//   manifest.json          format, version, step, and every file's size and CRC-32 — written
//                          last, so a folder without it is incomplete by construction
// A checkpoint is written into "step-N.tmp", each file fsynced, then renamed into place; a crash
// at any moment leaves the previous checkpoints intact.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "model/language_model.h"
#include "optim/optimizer.h"

namespace agpt {

struct TrainState {
    int step = 0;  // optimizer steps completed
    long loader_epoch = 0;
    long loader_position = 0;
    // Data-parallel ranks the position counts for (each took `loader_position` windows); files
    // without it were written by one rank.
    int data_parallel = 1;
};

class CheckpointStore {
  public:
    explicit CheckpointStore(std::string root) : root_(std::move(root)) {}
    const std::string& root() const { return root_; }

    // Writes step-N (optimizer may be null: a model-only checkpoint). Returns its folder.
    // A tensor-parallel model (Transformer with TP) writes full tensors: every rank of its TP
    // group calls save (the gathers are collective), rank 0 of the group writes and the others
    // return "". load slices each rank's shards from the full tensors.
    std::string save(const TrainState& state, LanguageModel& model, Optimizer* optimizer,
                     const std::string& config_toml) const;
    // Steps of the folders that have a manifest, ascending.
    std::vector<int> steps() const;
    std::string path_of(int step) const;
    // Verifies every checksum and shape, then loads. Throws Error naming the file and the
    // problem; the model is untouched unless everything checked out. A failed optimizer load
    // may leave part of its state written: a later successful load overwrites all of it.
    TrainState load(int step, LanguageModel& model, Optimizer* optimizer) const;
    // Loads `step`, or (step = -1) the newest checkpoint that verifies, reporting each corrupt
    // one it skips through `warn`. nullopt when there is none.
    std::optional<TrainState> load_latest(
        int step, LanguageModel& model, Optimizer* optimizer,
        const std::function<void(const std::string&)>& warn) const;
    // Deletes the oldest checkpoints so that keep_k remain (keep_k = 0: keep all). Only ever
    // called after a successful save, so the newest good checkpoint is never deleted.
    void prune(int keep_k) const;

  private:
    std::string root_;
};

// Under tensor parallelism, fails (naming the optimizer and tensor) when an optimizer state
// tensor is not per-parameter, since save could not gather it. No-op otherwise.
void check_tensor_parallel_state(const LanguageModel& model, Optimizer& optimizer);

// Writes manifest.json for the files in tmp_dir (model.safetensors, optimizer.safetensors,
// trainer_state.json, config.toml, whichever exist), fsyncs and renames tmp_dir to final_dir.
void finalize_checkpoint(const std::string& tmp_dir, const std::string& final_dir, int step,
                         bool model_only);

// Checks a step folder's manifest, sizes and checksums; throws Error naming the bad file.
void verify_checkpoint(const std::string& step_dir);

// Loads only the weights of a checkpoint step folder (checkpoint.initial_load_path).
void load_model_weights(const std::string& step_dir, LanguageModel& model);

}  // namespace agpt
