#include "tools/run_model.h"

#include <filesystem>

#include "core/error.h"
#include "model/model_args.h"
#include "train/checkpoint.h"

namespace agpt {

namespace fs = std::filesystem;

ModelArgs run_model_args(const JobConfig& cfg, const Tokenizer& tokenizer) {
    if (cfg.model.name != "agpt")
        fail("model.name '{}': only agpt models can be loaded here", cfg.model.name);
    ModelArgs args = resolve_model_args(cfg.model.flavor, cfg.model.switches());
    args.vocab_size = tokenizer.vocab_size();
    return args;
}

Tokenizer run_tokenizer(const std::string& run_dir, const JobConfig& cfg) {
    const fs::path saved = fs::path(run_dir) / "tokenizer.json";
    if (fs::exists(saved)) return Tokenizer::load(saved.string());
    return Tokenizer::load(cfg.model.tokenizer);
}

RunModel load_run_model(const std::string& run_dir, int step, int max_batch, int max_seq,
                        const std::function<void(const std::string&)>& warn) {
    const fs::path run(run_dir);
    if (!fs::is_directory(run)) fail("{}: no such run folder", run_dir);
    const fs::path config = run / "config.toml";
    if (!fs::exists(config))
        fail("{}: not a run folder (no config.toml); pass the folder `agpt train` wrote", run_dir);
    RunModel rm;
    rm.run_dir = run_dir;
    rm.config = load_job_config(config.string(), {});
    rm.tokenizer = run_tokenizer(run_dir, rm.config);
    if (fs::exists(run / "tokenizer.json")) rm.tokenizer_file = (run / "tokenizer.json").string();
    rm.model =
        std::make_unique<Transformer>(run_model_args(rm.config, rm.tokenizer), max_batch, max_seq);
    const CheckpointStore store((run / rm.config.checkpoint.folder).string());
    if (store.steps().empty())
        fail("{}: no checkpoints (train with --checkpoint.enable true)", store.root());
    if (step >= 0 && !fs::is_directory(store.path_of(step)))
        fail("{}: no checkpoint for step {}", store.root(), step);
    const auto state = store.load_latest(
        step, *rm.model, nullptr, warn ? warn : [](const std::string&) {});
    if (!state) fail("{}: no checkpoint could be loaded", store.root());
    rm.step = state->step;
    rm.checkpoint_dir = store.path_of(state->step);
    return rm;
}

}  // namespace agpt
