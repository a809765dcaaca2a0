#include "tools/hf_export.h"

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/byte_tokenizer.h"
#include "data/tokenizer.h"
#include "model/hf_llama_io.h"
#include "model/transformer.h"
#include "tools/run_model.h"
#include "train/checkpoint.h"
#include "train/config.h"

namespace agpt {

namespace fs = std::filesystem;

namespace {

// A fresh "<out>.tmp" next to out: debris of an interrupted export or import is replaced, an
// existing out is refused so that a good folder is never overwritten.
fs::path fresh_tmp(const std::string& out_dir) {
    if (out_dir.empty()) fail("--out: no folder given");
    if (fs::exists(out_dir)) fail("{}: already exists; choose another --out", out_dir);
    fs::path tmp = fs::path(out_dir).lexically_normal();
    if (!tmp.has_filename()) tmp = tmp.parent_path();
    tmp += ".tmp";
    fs::remove_all(tmp);
    fs::create_directories(tmp);
    return tmp;
}

}  // namespace

HfExportResult export_run_hf(const std::string& run_dir, int step, const std::string& out_dir,
                             const std::function<void(const std::string&)>& warn) {
    if (fs::exists(out_dir)) fail("{}: already exists; choose another --out", out_dir);
    RunModel rm = load_run_model(run_dir, step, 1, 1, warn);
    check_hf_expressible(rm.model->args());  // before any folder exists
    const fs::path tmp = fresh_tmp(out_dir);
    write_hf_llama_folder(*rm.model, rm.tokenizer.bos_id(), rm.tokenizer.eos_id(), tmp.string());
    if (!rm.tokenizer_file.empty()) fs::copy_file(rm.tokenizer_file, tmp / "tokenizer.json");
    fs::rename(tmp, out_dir);
    return {rm.checkpoint_dir, rm.step};
}

const Flavor* find_flavor_matching(const ModelArgs& a) {
    for (const Flavor& f : agpt_flavors()) {
        const ModelArgs& b = f.args;
        if (a.dim == b.dim && a.n_layers == b.n_layers && a.n_heads == b.n_heads &&
            a.n_kv_heads == b.n_kv_heads && a.ffn_hidden() == b.ffn_hidden() &&
            a.rope_theta == b.rope_theta && a.norm_eps == b.norm_eps && a.qk_norm == b.qk_norm &&
            a.attn_softcap == b.attn_softcap && a.final_softcap == b.final_softcap &&
            a.ffn == b.ffn)
            return &f;
    }
    return nullptr;
}

HfImportResult import_hf(const std::string& hf_dir, const std::string& out_dir) {
    const fs::path src(hf_dir);
    if (!fs::is_directory(src)) fail("{}: no such folder", hf_dir);
    if (!fs::exists(src / "config.json"))
        fail("{}: no config.json (not a Hugging Face model folder)", hf_dir);
    if (fs::exists(out_dir)) fail("{}: already exists; choose another --out", out_dir);
    const HfLlamaConfig hf = read_hf_llama_config((src / "config.json").string());
    HfImportResult result;
    result.args = hf.args;
    Transformer model(hf.args, 1, 1);
    load_hf_llama_weights(hf_dir, model);

    // The byte tokenizer is recognised by its vocabulary and special ids; anything else needs
    // the folder's own tokenizer.json.
    const bool byte_vocab = hf.args.vocab_size == ByteTokenizer::kVocabSize &&
                            hf.bos_token_id.value_or(ByteTokenizer::kBos) == ByteTokenizer::kBos &&
                            hf.eos_token_id.value_or(ByteTokenizer::kEos) == ByteTokenizer::kEos;
    const bool has_tokenizer_json = fs::exists(src / "tokenizer.json");
    if (byte_vocab && !has_tokenizer_json) result.tokenizer = "byte";

    const fs::path tmp = fresh_tmp(out_dir);
    write_hf_llama_safetensors(model, (tmp / "model.safetensors").string());
    if (has_tokenizer_json) {
        fs::copy_file(src / "tokenizer.json", tmp / "tokenizer.json");
        result.tokenizer = (fs::absolute(out_dir) / "tokenizer.json").lexically_normal().string();
    }
    if (const Flavor* f = find_flavor_matching(hf.args)) result.flavor = f->name;
    // config.toml makes the folder self-describing for merge and for readers; it can only be
    // written when the job it describes is a valid one.
    if (!result.flavor.empty() && !result.tokenizer.empty()) {
        JobConfig cfg;
        cfg.model.flavor = result.flavor;
        cfg.model.tokenizer = result.tokenizer;
        std::ofstream toml(tmp / "config.toml", std::ios::binary);
        toml << job_config_to_toml(cfg);
        if (!toml.flush()) fail("{}: write failed", (tmp / "config.toml").string());
    }
    finalize_checkpoint(tmp.string(), out_dir, 0, true);
    return result;
}

}  // namespace agpt
