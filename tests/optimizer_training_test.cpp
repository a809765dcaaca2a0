// Every optimizer wired into the trainer: it trains the bundled corpus, and a run resumed from a
// checkpoint ends bit for bit where the uninterrupted run ends (model and optimizer state).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"
#include "model/transformer.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/trainer.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("agpt_optimizer_training_" + name);
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

// Validation runs mid-way and checkpoints are saved, so Schedule-Free's switch to its evaluation
// weights and back is exercised; SophiaG estimates its Hessian before and after the resume point.
JobConfig job(const fs::path& dump, const std::string& name, const std::string& optimizer,
              int steps) {
    ConfigOverrides o = {{"job.dump_folder", dump.string()},
                         {"job.name", name},
                         {"model.flavor", "tiny"},
                         {"training.local_batch_size", "4"},
                         {"training.global_batch_size", "8"},
                         {"training.seq_len", "32"},
                         {"training.steps", std::to_string(steps)},
                         {"training.threads", "2"},
                         {"optimizer.name", optimizer},
                         {"lr_scheduler.warmup_steps", "4"},
                         {"validation.freq", "5"},
                         {"validation.steps", "2"},
                         {"metrics.log_freq", "5"},
                         {"checkpoint.enable", "true"},
                         {"checkpoint.interval", "6"},
                         {"sample.max_new_tokens", "0"}};
    if (optimizer == "SophiaG") o.push_back({"optimizer.hessian_interval", "4"});
    // A momentum reset inside the run (SPAM then warms up again for warmup_steps).
    if (optimizer == "SPAM" && steps <= 12) o.push_back({"optimizer.delta_t", "5"});
    return load_job_config("", o);
}

class EveryOptimizer : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryOptimizer, LossFallsOnBundledCorpus) {
    const std::string name = GetParam();
    const fs::path dump = fresh_dir("learn_" + name);
    JobConfig cfg = job(dump, "run", name, 40);
    cfg.checkpoint.enable = false;
    // Each optimizer at a learning rate in its working range on this tiny model.
    const std::map<std::string, double> lr = {{"AdamW", 3e-3},
                                              {"Muon", 0.02},
                                              {"Mano", 0.02},
                                              {"SophiaG", 1e-3},
                                              {"SPAM", 3e-3},
                                              {"Lion", 1e-3},
                                              {"ScheduleFreeAdamW", 5e-3},
                                              {"AdEMAMix", 3e-3}};
    cfg.optimizer.hyper["lr"] = lr.at(name);
    const TrainSummary s = train(cfg, nullptr);
    std::ifstream in(dump / "run" / "metrics.jsonl");
    double first = 0.0;
    for (std::string line; std::getline(in, line);) {
        const auto row = nlohmann::json::parse(line);
        if (row.contains("loss") && row["step"] == 1) first = row["loss"].get<double>();
        if (row.contains("optimizer_share")) {
            EXPECT_GT(row["optimizer_share"].get<double>(), 0.0);
            EXPECT_LT(row["optimizer_share"].get<double>(), 1.0);
        }
    }
    EXPECT_GT(first, 5.0);  // ln 258 = 5.55 at initialisation
    EXPECT_LT(s.final_loss, first - 1.0) << name;
    EXPECT_LT(s.final_val_loss, first - 1.0) << name;
}

TEST_P(EveryOptimizer, ResumedRunEqualsUninterruptedBitForBit) {
    const std::string name = GetParam();
    const fs::path dump = fresh_dir("resume_" + name);
    train(job(dump, "full", name, 12), nullptr);
    // The interrupted run: the same job stopped after its step-6 checkpoint, then run again.
    train(job(dump, "cut", name, 12), nullptr);
    const fs::path cut = dump / "cut" / "checkpoints";
    fs::remove_all(cut / "step-12");
    const TrainSummary resumed = train(job(dump, "cut", name, 12), nullptr);
    EXPECT_EQ(resumed.steps, 12);
    const std::string log = read_bytes(dump / "cut" / "train.log");
    EXPECT_NE(log.find("resumed from"), std::string::npos);

    const fs::path full = dump / "full" / "checkpoints" / "step-12";
    for (const char* file : {"model.safetensors", "optimizer.safetensors"}) {
        const std::string a = read_bytes(full / file), b = read_bytes(cut / "step-12" / file);
        ASSERT_FALSE(a.empty()) << file;
        EXPECT_TRUE(a == b) << name << ": " << file << " differs after resuming";
    }
    // The state really is the optimizer's: named after it, with its step counter at 12.
    const SafetensorsFile st((full / "optimizer.safetensors").string());
    EXPECT_EQ(st.metadata().at("optimizer"), name);
    EXPECT_GT(st.names().size(), 2u);
}

INSTANTIATE_TEST_SUITE_P(Trainer, EveryOptimizer,
                         ::testing::Values("AdamW", "Muon", "Mano", "SophiaG", "SPAM", "Lion",
                                           "ScheduleFreeAdamW", "AdEMAMix"),
                         [](const auto& info) { return info.param; });

TEST(OptimizerCheckpoint, AnotherOptimizersStateIsRefusedByName) {
    const fs::path dump = fresh_dir("mismatch");
    train(job(dump, "run", "Lion", 6), nullptr);
    JobConfig cfg = job(dump, "run", "AdamW", 12);
    try {
        train(cfg, nullptr);
        FAIL() << "resuming Lion's state into AdamW must fail";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("no checkpoint could be loaded"), std::string::npos) << msg;
    }
    const std::string log = read_bytes(dump / "run" / "train.log");
    EXPECT_NE(log.find("holds the state of optimizer Lion; this run uses AdamW"), std::string::npos)
        << log;
}

TEST(GaussNewtonBartlett, DrawsFromTheModelBySeedAndStep) {
    ModelArgs args = find_flavor("tiny")->args;
    args.vocab_size = 50;
    const int B = 2, T = 8;
    Transformer model(args, B, T);
    model.init_weights("agpt", 3);
    // A peaked softmax, so that labels drawn from it differ clearly from uniform ones.
    float* head_w = model.param("output.weight");
    for (std::size_t i = 0; i < model.view("output.weight").numel(); i++) head_w[i] *= 30.0f;
    std::vector<int32_t> tokens(2 * B * T);  // two micro-batches
    for (std::size_t i = 0; i < tokens.size(); i++) tokens[i] = static_cast<int32_t>(i * 7 % 50);
    auto estimate = [&](uint64_t seed, int step) {
        gauss_newton_bartlett(model, tokens.data(), B, T, 2, 0.0, seed, step);
        return model.grads();
    };
    const std::vector<float> a = estimate(42, 10);
    EXPECT_EQ(estimate(42, 10), a);  // a resumed run draws the same labels
    EXPECT_NE(estimate(42, 11), a);
    EXPECT_NE(estimate(43, 10), a);
    // The gradient buffers were zeroed first: the estimate is not added to what was there.
    std::fill(model.grads().begin(), model.grads().end(), 5.0f);
    EXPECT_EQ(estimate(42, 10), a);
    // Labels sampled from the model's own softmax: the expected gradient of the loss with
    // respect to the logits is zero, so averaged over many draws the LM-head gradient shrinks
    // far below one draw's.
    const ParamView& head = model.view("output.weight");
    auto head_norm = [&](const std::vector<float>& g) {
        double s = 0;
        for (std::size_t i = 0; i < head.numel(); i++)
            s += double(g[head.offset + i]) * g[head.offset + i];
        return std::sqrt(s);
    };
    std::vector<float> mean(a.size(), 0.0f);
    const int draws = 100;
    for (int d = 0; d < draws; d++) {
        const std::vector<float> g = estimate(42, 1000 + d);
        for (std::size_t i = 0; i < g.size(); i++) mean[i] += g[i] / draws;
    }
    EXPECT_LT(head_norm(mean), 0.3 * head_norm(a));
}

TEST(OptimizerDryRun, PrintsRoutingByRole) {
    JobConfig cfg = load_job_config("", {{"model.flavor", "tiny"}, {"optimizer.name", "Muon"}});
    const std::string out = describe_dry_run(cfg);
    EXPECT_NE(out.find("optimizer Muon"), std::string::npos) << out;
    // Hidden matrices go to Muon; the embedding, the LM head and norms to its AdamW.
    auto line_of = [&](const std::string& param) {
        const auto at = out.find(param + " ");
        EXPECT_NE(at, std::string::npos) << param;
        return out.substr(at, out.find('\n', at) - at);
    };
    EXPECT_TRUE(line_of("layers.0.attention.wq.weight").ends_with("Muon"));
    EXPECT_TRUE(line_of("layers.0.feed_forward.w2.weight").ends_with("Muon"));
    EXPECT_TRUE(line_of("tok_embeddings.weight").ends_with("AdamW"));
    EXPECT_TRUE(line_of("output.weight").ends_with("AdamW"));
    EXPECT_TRUE(line_of("layers.0.attention_norm.weight").ends_with("AdamW"));
}

}  // namespace
}  // namespace agpt
