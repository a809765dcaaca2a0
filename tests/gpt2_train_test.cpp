// The gpt2 family in `agpt train`: it learns the bundled corpus, resumes bit for bit, routes its
// tensors by role, and continues an llm.c run (llm.c checkpoint + llm.c token shards).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/byte_tokenizer.h"
#include "data/dataset.h"
#include "data/text_dataset.h"
#include "data/token_shards.h"
#include "data/tokenizer.h"
#include "model/gpt2.h"
#include "model/model_zoo.h"
#include "tools/llmc_import.h"
#include "train/config.h"
#include "train/trainer.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("agpt_gpt2_train_" + name);
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

std::string read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

ConfigOverrides gpt2_job(const fs::path& dump, const std::string& name, int steps) {
    return {{"job.dump_folder", dump.string()},
            {"job.name", name},
            {"model.name", "gpt2"},
            {"model.flavor", "gpt2_tiny"},
            {"training.local_batch_size", "8"},
            {"training.seq_len", "64"},
            {"training.steps", std::to_string(steps)},
            {"training.threads", "2"},
            {"optimizer.lr", "3e-3"},
            {"lr_scheduler.warmup_steps", "5"},
            {"validation.freq", "20"},
            {"validation.steps", "4"},
            {"metrics.log_freq", "1"},
            {"sample.max_new_tokens", "10"}};
}

double step_loss(const fs::path& run, int step) {
    std::ifstream in(run / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
        const auto row = nlohmann::json::parse(line);
        if (row["step"] == step && row.contains("loss")) return row["loss"].get<double>();
    }
    ADD_FAILURE() << "no loss for step " << step << " in " << run;
    return NAN;
}

TEST(Gpt2Train, LossFallsOnBundledCorpusWithGpt2Init) {
    const fs::path dump = fresh_dir("learn");
    const JobConfig cfg = load_job_config("", gpt2_job(dump, "run", 60));
    EXPECT_EQ(cfg.model.init, "gpt2");  // the family's own default scheme
    const TrainSummary s = train(cfg, nullptr);
    const double first = step_loss(dump / "run", 1);
    EXPECT_NEAR(first, std::log(258.0), 0.3);  // near-uniform at GPT-2's N(0, 0.02) init
    EXPECT_LT(s.final_loss, first - 1.5);
    EXPECT_LT(s.final_val_loss, first - 1.5);
    EXPECT_FALSE(s.sample.empty());
    const std::string log = read_bytes(dump / "run" / "train.log");
    EXPECT_NE(log.find("model gpt2/gpt2_tiny"), std::string::npos) << log;
    EXPECT_NE(read_bytes(dump / "run" / "config.toml").find("name = \"gpt2\""), std::string::npos);
}

TEST(Gpt2Train, ResumedRunEqualsUninterruptedBitForBit) {
    const fs::path dump = fresh_dir("resume");
    auto job = [&](const std::string& name) {
        ConfigOverrides o = gpt2_job(dump, name, 10);
        o.push_back({"checkpoint.enable", "true"});
        o.push_back({"checkpoint.interval", "5"});
        o.push_back({"optimizer.name", "Muon"});
        return load_job_config("", o);
    };
    train(job("full"), nullptr);
    train(job("cut"), nullptr);
    fs::remove_all(dump / "cut" / "checkpoints" / "step-10");
    const TrainSummary resumed = train(job("cut"), nullptr);
    EXPECT_EQ(resumed.steps, 10);
    EXPECT_NE(read_bytes(dump / "cut" / "train.log").find("resumed from"), std::string::npos);
    for (const char* file : {"model.safetensors", "optimizer.safetensors"}) {
        const std::string a = read_bytes(dump / "full" / "checkpoints" / "step-10" / file);
        const std::string b = read_bytes(dump / "cut" / "checkpoints" / "step-10" / file);
        ASSERT_FALSE(a.empty()) << file;
        EXPECT_TRUE(a == b) << file << " differs after resuming";
    }
}

TEST(Gpt2Train, DryRunRoutesMatricesToMuonAndBiasesNormsEmbeddingsToAdamW) {
    ConfigOverrides o = gpt2_job(fresh_dir("dry"), "run", 10);
    o.push_back({"optimizer.name", "Muon"});
    const std::string table = describe_dry_run(load_job_config("", o));
    EXPECT_NE(table.find("model gpt2/gpt2_tiny"), std::string::npos) << table;
    auto line_of = [&](const std::string& tensor) {
        const auto at = table.find(tensor + " ");
        if (at == std::string::npos) return std::string("(missing)");
        return table.substr(at, table.find('\n', at) - at);
    };
    EXPECT_NE(line_of("h.0.attn.c_attn.weight").find("Muon"), std::string::npos) << table;
    EXPECT_NE(line_of("h.1.mlp.c_proj.weight").find("Muon"), std::string::npos) << table;
    for (const char* t : {"h.0.attn.c_attn.bias", "h.0.ln_1.weight", "wte.weight", "wpe.weight"})
        EXPECT_NE(line_of(t).find("AdamW"), std::string::npos) << t << "\n" << table;
}

TEST(Gpt2Train, ConfigErrorsNameTheKey) {
    const fs::path dump = fresh_dir("errors");
    auto error_of = [&](ConfigOverrides extra) {
        ConfigOverrides o = gpt2_job(dump, "run", 10);
        o.insert(o.end(), extra.begin(), extra.end());
        try {
            load_job_config("", o);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("(accepted)");
    };
    EXPECT_NE(error_of({{"model.flavor", "124m"}}).find("not a gpt2 flavor (did you mean '124M'?)"),
              std::string::npos)
        << error_of({{"model.flavor", "124m"}});
    EXPECT_NE(error_of({{"model.qk_norm", "true"}}).find("model.qk_norm is an agpt switch"),
              std::string::npos);
    EXPECT_NE(error_of({{"model.init", "agpt"}}).find("model.init = 'agpt' must be one of: gpt2"),
              std::string::npos)
        << error_of({{"model.init", "agpt"}});
    // gpt2_tiny's learned position table has 128 rows.
    EXPECT_NE(error_of({{"training.seq_len", "129"}}).find("training.seq_len = 129 exceeds"),
              std::string::npos);
    EXPECT_EQ(error_of({{"training.seq_len", "128"}}), "(accepted)");
}

// An llm.c run continues in agpt: its checkpoint (imported) and its token shards. The first
// step's loss is the llm.c weights' loss on the first batch, computed here by an independent
// forward of the checkpoint read straight from llm.c's file.
TEST(Gpt2Train, ContinuesAnLlmcRunFromItsCheckpointAndShards) {
    const fs::path dump = fresh_dir("llmc");
    const ByteTokenizer bytes;
    // An "llm.c" model: trained weights stand in for a run's (random but not init-like).
    auto llmc_model = make_language_model("gpt2", "gpt2_tiny", {}, 258, 8, 64);
    auto& g = dynamic_cast<Gpt2&>(*llmc_model);
    g.init_weights("gpt2", 99);
    for (std::size_t i = 0; i < g.params().size(); i += 7) g.params()[i] *= 3.0f;
    write_llmc_checkpoint(g.args(), g.params().data(), (dump / "gpt2_tiny.bin").string());
    import_llmc((dump / "gpt2_tiny.bin").string(), (dump / "imported").string());

    const fs::path shards = dump / "shards";
    fs::create_directories(shards);
    std::ifstream in(resolve_dataset_path("tinyshakespeare"), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const auto ids = bytes.encode(ss.str());
    write_token_shard((shards / "tiny_train_000.bin").string(),
                      std::vector<uint32_t>(ids.begin(), ids.begin() + 200000), 257);
    write_token_shard((shards / "tiny_val_000.bin").string(),
                      std::vector<uint32_t>(ids.begin() + 200000, ids.begin() + 220000), 257);

    ConfigOverrides o = gpt2_job(dump, "continued", 20);
    o.push_back({"training.dataset", shards.string()});
    o.push_back({"checkpoint.initial_load_path", (dump / "imported").string()});
    const JobConfig cfg = load_job_config("", o);
    const TrainSummary s = train(cfg, nullptr);

    // The reference: the llm.c file read directly, on the loader's first batch.
    Gpt2 ref(read_llmc_header((dump / "gpt2_tiny.bin").string()), 8, 64);
    read_llmc_params((dump / "gpt2_tiny.bin").string(), ref.args(), ref.params().data());
    const Tokenizer tokenizer = Tokenizer::load("byte");
    const TrainingData data = open_training_data(shards.string(), tokenizer, 0.1);
    WindowLoader loader(data.train.sizes, data.train.read, 64,
                        static_cast<uint64_t>(cfg.training.seed));
    std::vector<int32_t> inputs(8 * 64), targets(8 * 64);
    loader.next_batch(8, inputs.data(), targets.data());
    const double expected = ref.forward_loss(inputs.data(), targets.data(), 8, 64) / (8 * 64);
    EXPECT_NEAR(step_loss(dump / "continued", 1), expected, 1e-5 * expected);
    EXPECT_TRUE(std::isfinite(s.final_val_loss));
    EXPECT_NE(read_bytes(dump / "continued" / "train.log").find("initial weights from"),
              std::string::npos);

    // An llm.c checkpoint of another shape is refused, naming the tensor.
    ConfigOverrides bad = gpt2_job(dump, "wrong_shape", 5);
    bad.push_back({"model.flavor", "124M"});
    bad.push_back({"checkpoint.initial_load_path", (dump / "imported").string()});
    try {
        train(load_job_config("", bad), nullptr);
        FAIL() << "a gpt2_tiny checkpoint must not load into 124M";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("shape"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace agpt
