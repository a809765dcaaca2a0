#include "tools/run_model.h"

#include <filesystem>

#include "core/error.h"
#include "data/byte_tokenizer.h"
#include "model/hf_llama_io.h"
#include "model/model_args.h"
#include "tools/hf_export.h"
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

namespace {

// A Hugging Face Llama/Qwen3 folder as a model-only "run": the flavor its shapes match, and the
// byte tokenizer (recognised by its vocabulary and special ids) or the folder's tokenizer.json.
RunModel load_hf_folder_model(const std::string& dir, int max_batch, int max_seq) {
    const fs::path src(dir);
    const HfLlamaConfig hf = read_hf_llama_config((src / "config.json").string());
    const Flavor* flavor = find_flavor_matching(hf.args);
    if (flavor == nullptr)
        fail("{}: config.json's shapes match no agpt flavor (agpt models lists them)", dir);
    std::string tokenizer;
    if (fs::exists(src / "tokenizer.json")) {
        tokenizer = (src / "tokenizer.json").string();
    } else if (hf.args.vocab_size == ByteTokenizer::kVocabSize &&
               hf.bos_token_id.value_or(ByteTokenizer::kBos) == ByteTokenizer::kBos &&
               hf.eos_token_id.value_or(ByteTokenizer::kEos) == ByteTokenizer::kEos) {
        tokenizer = "byte";
    } else {
        fail("{}: no tokenizer.json, and the vocabulary ({}) is not the byte tokenizer's", dir,
             hf.args.vocab_size);
    }
    RunModel rm;
    rm.run_dir = dir;
    rm.config = load_job_config("", {{"model.flavor", flavor->name},
                                     {"model.tokenizer", tokenizer},
                                     {"model.qk_norm", hf.args.qk_norm ? "true" : "false"}});
    rm.tokenizer = Tokenizer::load(tokenizer);
    if (tokenizer != "byte") rm.tokenizer_file = tokenizer;
    if (rm.tokenizer.vocab_size() != hf.args.vocab_size)
        fail("{}: tokenizer.json has {} ids, config.json's vocab_size is {}", dir,
             rm.tokenizer.vocab_size(), hf.args.vocab_size);
    rm.model =
        std::make_unique<Transformer>(run_model_args(rm.config, rm.tokenizer), max_batch, max_seq);
    load_model_weights(dir, *rm.model);
    rm.checkpoint_dir = dir;
    return rm;
}

}  // namespace

RunModel load_run_model(const std::string& run_dir, int step, int max_batch, int max_seq,
                        const std::function<void(const std::string&)>& warn) {
    if (is_hf_llama_folder(run_dir)) {
        if (step > 0) fail("{}: a Hugging Face folder has no step {}", run_dir, step);
        return load_hf_folder_model(run_dir, max_batch, max_seq);
    }
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
