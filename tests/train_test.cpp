#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "data/bpe_tokenizer.h"
#include "data/byte_tokenizer.h"
#include "data/text_dataset.h"
#include "data/token_shards.h"
#include "train/config.h"
#include "train/trainer.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("agpt_train_test_" + name);
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

// A small job that runs in a few seconds.
JobConfig small_job(const fs::path& dump, const std::string& name) {
    return load_job_config("", {{"job.dump_folder", dump.string()},
                                {"job.name", name},
                                {"model.flavor", "tiny"},
                                {"training.local_batch_size", "8"},
                                {"training.seq_len", "64"},
                                {"training.steps", "120"},
                                {"training.threads", "2"},
                                {"optimizer.lr", "3e-3"},
                                {"lr_scheduler.warmup_steps", "10"},
                                {"validation.freq", "60"},
                                {"validation.steps", "8"},
                                {"metrics.log_freq", "20"},
                                {"sample.max_new_tokens", "20"}});
}

std::vector<nlohmann::json> read_jsonl(const fs::path& p) {
    std::ifstream in(p);
    std::vector<nlohmann::json> rows;
    for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
    return rows;
}

TEST(Train, LossFallsOnBundledCorpusAndRunFolderIsComplete) {
    const fs::path dump = fresh_dir("learn");
    const TrainSummary s = train(small_job(dump, "run"), nullptr);
    // A uniform guess over 258 byte ids costs ln 258 = 5.55 nats; unigram statistics alone 3.3.
    EXPECT_LT(s.final_loss, 2.9);
    EXPECT_LT(s.final_val_loss, 2.9);
    EXPECT_EQ(s.sample.size(), 20u);  // byte tokens decode to one byte each

    const fs::path run = dump / "run";
    ASSERT_TRUE(fs::exists(run / "config.toml"));
    ASSERT_TRUE(fs::exists(run / "train.log"));
    const JobConfig reread = load_job_config((run / "config.toml").string(), {});
    EXPECT_EQ(reread.training.steps, 120);
    EXPECT_EQ(reread.model.flavor, "tiny");

    // The byte tokenizer is saved as an equivalent byte-level BPE.
    ASSERT_TRUE(fs::exists(run / "tokenizer.json"));
    const BpeTokenizer saved = BpeTokenizer::load((run / "tokenizer.json").string());
    std::string bytes;
    for (int i = 0; i < 2000; i++) bytes.push_back(static_cast<char>((i * 7919) % 256));
    EXPECT_EQ(saved.encode(bytes), ByteTokenizer().encode(bytes));

    const auto rows = read_jsonl(run / "metrics.jsonl");
    int loss_rows = 0, val_rows = 0;
    for (const auto& r : rows) {
        if (r.contains("val_loss")) {
            val_rows++;
            continue;
        }
        loss_rows++;
        for (const char* key : {"step", "loss", "grad_norm", "lr", "tokens_seen", "tok_per_s",
                                "tflops", "mfu", "step_time_s", "data_time_s", "mem_gib"})
            EXPECT_TRUE(r.contains(key)) << key;
        EXPECT_EQ(r["tokens_seen"].get<long>(), r["step"].get<long>() * 8 * 64);
        EXPECT_GT(r["tok_per_s"].get<double>(), 0.0);
    }
    EXPECT_EQ(loss_rows, 7);  // steps 1, 20, 40, ..., 120
    EXPECT_EQ(val_rows, 2);   // steps 60 and 120
}

TEST(Train, SameSeedGivesIdenticalLossesAndOtherSeedDiffers) {
    const fs::path dump = fresh_dir("determinism");
    auto losses = [&](const std::string& name, const std::string& seed) {
        JobConfig cfg = small_job(dump, name);
        cfg.training.steps = 20;
        cfg.metrics.log_freq = 1;
        cfg.validation.enable = false;
        cfg.sample.max_new_tokens = 0;
        cfg.training.seed = std::stol(seed);
        train(cfg, nullptr);
        std::vector<double> out;
        for (const auto& r : read_jsonl(dump / name / "metrics.jsonl"))
            out.push_back(r["loss"].get<double>());
        return out;
    };
    const auto a = losses("a", "7"), b = losses("b", "7"), c = losses("c", "8");
    ASSERT_EQ(a.size(), 20u);
    EXPECT_EQ(a, b);  // bit-identical, not merely close
    EXPECT_NE(a, c);
}

TEST(Train, GradientAccumulationMatchesOneLargeBatch) {
    // torchtitan semantics: global batch 8 as 2 micro-batches of 4 equals one batch of 8, up to
    // floating-point summation order.
    const fs::path dump = fresh_dir("accum");
    auto run = [&](const std::string& name, int local, int global) {
        JobConfig cfg = small_job(dump, name);
        cfg.training.steps = 5;
        cfg.metrics.log_freq = 1;
        cfg.validation.enable = false;
        cfg.sample.max_new_tokens = 0;
        cfg.training.local_batch_size = local;
        cfg.training.global_batch_size = global;
        train(cfg, nullptr);
        std::vector<double> out;
        for (const auto& r : read_jsonl(dump / name / "metrics.jsonl"))
            out.push_back(r["loss"].get<double>());
        return out;
    };
    const auto big = run("big", 8, 8), accum = run("accum", 4, 8);
    ASSERT_EQ(big.size(), accum.size());
    for (std::size_t i = 0; i < big.size(); i++) EXPECT_NEAR(big[i], accum[i], 1e-4) << i;
}

TEST(Train, ExistingRunFolderIsRefusedAndLeftIntact) {
    const fs::path dump = fresh_dir("exists");
    fs::create_directories(dump / "run");
    { std::ofstream(dump / "run" / "metrics.jsonl") << "precious\n"; }
    try {
        train(small_job(dump, "run"), nullptr);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos) << e.what();
    }
    std::ifstream in(dump / "run" / "metrics.jsonl");
    std::stringstream ss;
    ss << in.rdbuf();
    EXPECT_EQ(ss.str(), "precious\n");
}

TEST(Train, MissingDatasetIsRefusedBeforeTheRunFolderIsCreated) {
    const fs::path dump = fresh_dir("nodata");
    JobConfig cfg = small_job(dump, "run");
    cfg.training.dataset = (dump / "no_such_file.txt").string();
    try {
        train(cfg, nullptr);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("no_such_file.txt"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dump / "run"));
}

TEST(Train, CorpusShorterThanOneWindowIsRefused) {
    const fs::path dump = fresh_dir("short");
    { std::ofstream(dump / "short.txt") << "too short"; }
    JobConfig cfg = small_job(dump, "run");
    cfg.training.dataset = (dump / "short.txt").string();
    EXPECT_THROW(train(cfg, nullptr), Error);
    EXPECT_FALSE(fs::exists(dump / "run"));
}

TEST(Train, DatasetByNameFromTheRegistryFileInTheConfig) {
    const fs::path dump = fresh_dir("registry");
    // 300 short documents as JSON lines, registered under a name with a path relative to the
    // registry file.
    {
        std::ofstream docs(dump / "docs.jsonl");
        for (int i = 0; i < 300; i++)
            docs << "{\"text\": \"Document " << i << ": to be, or not to be, that is the "
                 << "question.\"}\n";
        std::ofstream(dump / "datasets.toml")
            << "[datasets.quotes]\npath = \"docs.jsonl\"\nformat = \"jsonl\"\n";
    }
    JobConfig cfg = small_job(dump, "run");
    cfg.training.dataset = "quotes";
    cfg.training.dataset_registry = (dump / "datasets.toml").string();
    cfg.training.steps = 30;
    cfg.sample.max_new_tokens = 0;
    const TrainSummary s = train(cfg, nullptr);
    EXPECT_LT(s.final_loss, 3.0);  // the repeated sentence is learnt fast
    std::ifstream log(dump / "run" / "train.log");
    std::stringstream text;
    text << log.rdbuf();
    EXPECT_NE(text.str().find("docs.jsonl"), std::string::npos) << text.str();

    cfg.training.dataset = "quote";
    cfg.job.name = "unknown";
    try {
        train(cfg, nullptr);
        FAIL() << "an unknown name must be refused";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("quotes"), std::string::npos) << msg;  // the known names are listed
        EXPECT_NE(msg.find("tinyshakespeare"), std::string::npos) << msg;
    }
}

TEST(Train, WithABpeTokenizerFileTheRunKeepsItsTokenizer) {
    const fs::path dump = fresh_dir("bpe");
    BpeTrainOptions opt;
    opt.vocab_size = 512;
    const BpeTokenizer tok =
        BpeTokenizer::train_files({resolve_dataset_path("tinyshakespeare")}, opt);
    const std::string tok_path = (dump / "tok512.json").string();
    tok.save_hf_json(tok_path);
    JobConfig cfg = small_job(dump, "run");
    cfg.model.tokenizer = tok_path;
    cfg.training.steps = 60;
    const TrainSummary s = train(cfg, nullptr);
    EXPECT_LT(s.final_loss, std::log(512.0) - 1.0);  // well below a uniform guess
    ASSERT_TRUE(fs::exists(dump / "run" / "tokenizer.json"));
    const BpeTokenizer reloaded = BpeTokenizer::load((dump / "run" / "tokenizer.json").string());
    const std::string text = "ROMEO: But soft, what light";
    EXPECT_EQ(reloaded.encode(text), tok.encode(text));
}

TEST(Train, FromLlmcTokenShardsWithValidationShards) {
    const fs::path dump = fresh_dir("shards");
    const fs::path shards = dump / "shards";
    fs::create_directories(shards);
    std::ifstream in(resolve_dataset_path("tinyshakespeare"), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const auto ids = ByteTokenizer().encode(ss.str());
    const std::vector<uint32_t> train_ids(ids.begin(), ids.begin() + 300000),
        val_ids(ids.begin() + 300000, ids.begin() + 320000);
    write_token_shard((shards / "shakespeare_train_000.bin").string(), train_ids, 257);
    write_token_shard((shards / "shakespeare_val_000.bin").string(), val_ids, 257);
    JobConfig cfg = small_job(dump, "run");
    cfg.training.dataset = shards.string();
    cfg.training.steps = 40;
    const TrainSummary s = train(cfg, nullptr);
    EXPECT_LT(s.final_loss, 3.3);
    EXPECT_TRUE(std::isfinite(s.final_val_loss));

    // Token ids beyond the model's vocabulary are refused with the id named.
    const fs::path bad = dump / "bad_shards";
    fs::create_directories(bad);
    write_token_shard((bad / "bad_train_000.bin").string(), std::vector<uint32_t>(1000, 1000),
                      1000);
    cfg.training.dataset = bad.string();
    cfg.validation.enable = false;
    cfg.job.name = "run2";
    try {
        train(cfg, nullptr);
        FAIL() << "expected an error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("1000"), std::string::npos) << e.what();
    }
}

TEST(WindowLoader, EpochVisitsEveryWindowOnceAndOrderDependsOnSeed) {
    std::vector<int32_t> tokens(1001);
    for (std::size_t i = 0; i < tokens.size(); i++) tokens[i] = static_cast<int32_t>(i);
    WindowLoader a(tokens, 10, 1), b(tokens, 10, 1), c(tokens, 10, 2);
    ASSERT_EQ(a.num_windows(), 100);
    std::vector<int> seen(100, 0);
    std::vector<int32_t> in_a(10), tg_a(10), in_b(10), tg_b(10), in_c(10), tg_c(10);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        a.next_batch(1, in_a.data(), tg_a.data());
        b.next_batch(1, in_b.data(), tg_b.data());
        c.next_batch(1, in_c.data(), tg_c.data());
        EXPECT_EQ(in_a, in_b);
        differ += in_a != in_c;
        // Token values equal their positions: a window starts at a multiple of T and targets are
        // the inputs shifted by one.
        ASSERT_EQ(in_a[0] % 10, 0);
        seen[in_a[0] / 10]++;
        for (int t = 0; t < 10; t++) {
            EXPECT_EQ(in_a[t], in_a[0] + t);
            EXPECT_EQ(tg_a[t], in_a[t] + 1);
        }
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 100);
    EXPECT_GT(differ, 50);
    EXPECT_EQ(a.epoch(), 0);
    a.next_batch(1, in_a.data(), tg_a.data());
    EXPECT_EQ(a.epoch(), 1);
}

}  // namespace
}  // namespace agpt
