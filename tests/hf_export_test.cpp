// Hugging Face export and import: the folder's contents, the bit-exact round trip
// export → import → checkpoint, and refusals of bad config.json files that name file and key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "core/error.h"
#include "core/safetensors.h"
#include "model/hf_llama_io.h"
#include "model/transformer.h"
#include "tools/hf_export.h"
#include "tools/run_model.h"
#include "train/checkpoint.h"
#include "train/config.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// A run folder as `agpt train --checkpoint.enable true` leaves it, without training: config.toml
// and checkpoints at steps 1 and 2 (different weights).
struct FakeRun {
    fs::path root;
    fs::path run;
    JobConfig cfg;
    std::vector<float> step1, step2;

    FakeRun(const std::string& name, const std::string& flavor) {
        root = fs::temp_directory_path() / ("agpt_hf_test_" + name);
        fs::remove_all(root);
        run = root / "run";
        fs::create_directories(run);
        cfg.model.flavor = flavor;
        const std::string toml = job_config_to_toml(cfg);
        std::ofstream(run / "config.toml") << toml;
        ModelArgs a = find_flavor(flavor)->args;
        a.vocab_size = 258;
        Transformer m(a, 1, 1);
        const CheckpointStore store((run / "checkpoints").string());
        m.init_weights("agpt", 1);
        step1 = m.params();
        store.save({1, 0, 0}, m, nullptr, toml);
        m.init_weights("torchtitan", 2);
        step2 = m.params();
        store.save({2, 0, 0}, m, nullptr, toml);
    }
    ~FakeRun() { fs::remove_all(root); }
};

json read_json(const fs::path& p) {
    return json::parse(slurp(p));
}
void write_json(const fs::path& p, const json& j) {
    std::ofstream(p) << j.dump(2);
}

TEST(HfExport, WritesLlamaConfigAndWeights) {
    FakeRun r("config", "tiny");
    const fs::path out = r.root / "hf";
    const HfExportResult res = export_run_hf(r.run.string(), -1, out.string());
    EXPECT_EQ(res.step, 2);
    EXPECT_TRUE(fs::exists(out / "model.safetensors"));
    EXPECT_FALSE(fs::exists(out / "tokenizer.json"));  // byte tokenizer: no file
    EXPECT_FALSE(fs::exists(out.string() + ".tmp"));
    const json c = read_json(out / "config.json");
    EXPECT_EQ(c["architectures"], json::array({"LlamaForCausalLM"}));
    EXPECT_EQ(c["model_type"], "llama");
    EXPECT_EQ(c["hidden_size"], 64);
    EXPECT_EQ(c["intermediate_size"], 192);
    EXPECT_EQ(c["num_hidden_layers"], 2);
    EXPECT_EQ(c["num_attention_heads"], 4);
    EXPECT_EQ(c["num_key_value_heads"], 2);
    EXPECT_EQ(c["vocab_size"], 258);
    EXPECT_EQ(c["rope_theta"], 10000.0);
    EXPECT_EQ(c["rms_norm_eps"], 1e-5);
    EXPECT_EQ(c["tie_word_embeddings"], false);
    EXPECT_EQ(c["torch_dtype"], "float32");
    EXPECT_EQ(c["hidden_act"], "silu");
    EXPECT_EQ(c["attention_bias"], false);
    EXPECT_EQ(c["bos_token_id"], 256);
    EXPECT_EQ(c["eos_token_id"], 257);
    EXPECT_TRUE(c.contains("max_position_embeddings"));

    const SafetensorsFile st((out / "model.safetensors").string());
    EXPECT_EQ(st.names().size(), 3u + 9u * 2u);
    EXPECT_EQ(st.tensor("model.layers.1.self_attn.k_proj.weight").shape,
              (std::vector<int64_t>{32, 64}));
    EXPECT_EQ(st.tensor("lm_head.weight").shape, (std::vector<int64_t>{258, 64}));
    EXPECT_EQ(st.metadata().at("format"), "pt");
}

TEST(HfExport, RoundTripThroughImportIsBitExact) {
    for (const char* flavor : {"tiny", "small"}) {  // GQA and plain multi-head
        FakeRun r(std::string("roundtrip_") + flavor, flavor);
        const fs::path out = r.root / "hf";
        export_run_hf(r.run.string(), 1, out.string());  // an older step on purpose
        const HfImportResult imp = import_hf(out.string(), (r.root / "imported").string());
        EXPECT_EQ(imp.flavor, flavor);
        EXPECT_EQ(imp.tokenizer, "byte");
        verify_checkpoint((r.root / "imported").string());

        ModelArgs a = find_flavor(flavor)->args;
        a.vocab_size = 258;
        Transformer m(a, 1, 1);
        load_model_weights((r.root / "imported").string(), m);
        EXPECT_EQ(0, std::memcmp(m.params().data(), r.step1.data(), r.step1.size() * 4));
        // The HF folder itself, as checkpoint.initial_load_path may name it.
        Transformer m2(a, 1, 1);
        load_hf_llama_weights(out.string(), m2);
        EXPECT_EQ(0, std::memcmp(m2.params().data(), r.step1.data(), r.step1.size() * 4));
        // The imported step folder's config.toml names a job that trains this model.
        const JobConfig back = load_job_config((r.root / "imported" / "config.toml").string(), {});
        EXPECT_EQ(back.model.flavor, flavor);
        EXPECT_EQ(back.model.tokenizer, "byte");
        // Exporting the newest step and loading it through run_model gives step 2's weights.
        const RunModel rm = load_run_model(r.run.string(), -1, 1, 1);
        EXPECT_EQ(rm.step, 2);
        EXPECT_EQ(rm.model->params(), r.step2);
    }
}

TEST(HfExport, RefusesAnExistingOutputAndMissingSteps) {
    FakeRun r("refuse", "tiny");
    const fs::path out = r.root / "hf";
    fs::create_directories(out);
    std::ofstream(out / "keep.txt") << "precious";
    std::string e = error_of([&] { export_run_hf(r.run.string(), -1, out.string()); });
    EXPECT_NE(e.find("already exists"), std::string::npos) << e;
    EXPECT_EQ(slurp(out / "keep.txt"), "precious");
    e = error_of([&] { export_run_hf(r.run.string(), 7, (r.root / "hf7").string()); });
    EXPECT_NE(e.find("step 7"), std::string::npos) << e;
    EXPECT_FALSE(fs::exists(r.root / "hf7"));
    e = error_of([&] { export_run_hf((r.root / "nosuch").string(), -1, (r.root / "x").string()); });
    EXPECT_NE(e.find("nosuch"), std::string::npos) << e;
}

// An HF folder from the tiny model whose config.json a test then spoils.
struct HfFolder {
    fs::path root, dir;
    ModelArgs args;
    std::vector<float> params;
    explicit HfFolder(const std::string& name) {
        root = fs::temp_directory_path() / ("agpt_hf_import_" + name);
        fs::remove_all(root);
        dir = root / "hf";
        fs::create_directories(dir);
        args = find_flavor("tiny")->args;
        args.vocab_size = 258;
        Transformer m(args, 1, 1);
        m.init_weights("agpt", 4);
        params = m.params();
        write_hf_llama_folder(m, 256, 257, dir.string());
    }
    ~HfFolder() { fs::remove_all(root); }
    json config() const { return read_json(dir / "config.json"); }
    void set_config(const json& j) const { write_json(dir / "config.json", j); }
    std::string import_error() const {
        return error_of([&] { import_hf(dir.string(), (root / "out").string()); });
    }
};

TEST(HfImport, RefusesBadConfigNamingFileAndKey) {
    HfFolder f("badconfig");
    const json good = f.config();
    auto expect_refused = [&](const json& j, const std::string& key) {
        f.set_config(j);
        const std::string e = f.import_error();
        EXPECT_NE(e.find("config.json"), std::string::npos) << e;
        EXPECT_NE(e.find(key), std::string::npos) << "wanted '" << key << "' in: " << e;
        EXPECT_FALSE(fs::exists(f.root / "out"));
    };
    for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers",
                            "num_attention_heads", "vocab_size", "rms_norm_eps", "model_type"}) {
        json j = good;
        j.erase(key);
        expect_refused(j, key);
    }
    json j = good;
    j["model_type"] = "mistral";
    expect_refused(j, "model_type");
    j = good;
    j["hidden_size"] = "64";
    expect_refused(j, "hidden_size");
    j = good;
    j["num_key_value_heads"] = 3;
    expect_refused(j, "num_key_value_heads");
    j = good;
    j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
    expect_refused(j, "rope_scaling");
    j = good;
    j["hidden_act"] = "gelu";
    expect_refused(j, "hidden_act");
    j = good;
    j["attention_bias"] = true;
    expect_refused(j, "attention_bias");
    j = good;
    j["head_dim"] = 32;
    expect_refused(j, "head_dim");
    f.set_config("not json");
    EXPECT_NE(f.import_error().find("config.json"), std::string::npos);
}

TEST(HfImport, RefusesWeightsOfTheWrongShape) {
    HfFolder f("shapes");
    json j = f.config();
    j["intermediate_size"] = 256;  // the file holds 192-wide FFN weights
    f.set_config(j);
    std::string e = f.import_error();
    EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
    EXPECT_NE(e.find("mlp.gate_proj.weight"), std::string::npos) << e;

    // A config for another model than the one being trained is refused key by key.
    j["intermediate_size"] = 192;
    j["rope_theta"] = 500000.0;
    f.set_config(j);
    ModelArgs a = f.args;
    Transformer m(a, 1, 1);
    e = error_of([&] { load_hf_llama_weights(f.dir.string(), m); });
    EXPECT_NE(e.find("rope_theta"), std::string::npos) << e;
    EXPECT_NE(e.find("config.json"), std::string::npos) << e;

    j["rope_theta"] = 10000.0;
    f.set_config(j);
    fs::remove(f.dir / "model.safetensors");
    e = f.import_error();
    EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
}

TEST(HfImport, TiedEmbeddingsFillTheHead) {
    HfFolder f("tied");
    // Rewrite the weights without lm_head, as a tied Llama saves them.
    const SafetensorsFile st((f.dir / "model.safetensors").string());
    SafetensorsWriter w;
    for (const auto& n : st.names()) {
        if (n == "lm_head.weight") continue;
        const auto data = st.get<float>(n);
        w.add<float>(n, st.tensor(n).shape, data.data());
    }
    w.write((f.dir / "model.safetensors.new").string());
    fs::rename(f.dir / "model.safetensors.new", f.dir / "model.safetensors");
    std::string e = f.import_error();
    EXPECT_NE(e.find("lm_head.weight"), std::string::npos) << e;  // untied: the head is missing
    json j = f.config();
    j["tie_word_embeddings"] = true;
    f.set_config(j);
    Transformer m(f.args, 1, 1);
    load_hf_llama_weights(f.dir.string(), m);
    const ParamView& emb = m.view("tok_embeddings.weight");
    const ParamView& head = m.view("output.weight");
    EXPECT_TRUE(std::equal(m.params().begin() + emb.offset,
                           m.params().begin() + emb.offset + emb.numel(),
                           m.params().begin() + head.offset));
}

TEST(HfImport, FindsTheMatchingFlavorOrNone) {
    ModelArgs a = find_flavor("small")->args;
    a.vocab_size = 1000;
    ASSERT_NE(find_flavor_matching(a), nullptr);
    EXPECT_EQ(find_flavor_matching(a)->name, "small");
    a.ffn_hidden_override = a.ffn_hidden() + 8;
    EXPECT_EQ(find_flavor_matching(a), nullptr);
}

}  // namespace
}  // namespace agpt
