// `agpt sft`, `agpt rl` and `agpt rl eval` end to end on a tiny model: run folders, metrics,
// checkpoints, exact resume, and the errors bad input gets.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "rl/eval.h"
#include "rl/grpo.h"
#include "rl/sft.h"
#include "tools/hf_export.h"
#include "train/config.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

std::string read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<nlohmann::json> metrics_of(const fs::path& run) {
    std::vector<nlohmann::json> out;
    std::ifstream in(run / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

class RlRun : public ::testing::Test {
  protected:
    static void SetUpTestSuite() {
        dir_ = fs::temp_directory_path() / ("agpt_rl_run_" + std::to_string(::getpid()));
        fs::remove_all(dir_);
        const JobConfig cfg = load_job_config("", sft_overrides("sft"));
        sft_ = run_sft(cfg, nullptr);
    }
    static void TearDownTestSuite() { fs::remove_all(dir_); }
    static ConfigOverrides sft_overrides(const std::string& name) {
        return {{"job.dump_folder", dir_.string()},
                {"job.name", name},
                {"model.flavor", "tiny"},
                {"task.name", "sum_of_digits"},
                {"task.difficulty", "2"},
                {"training.steps", "60"},
                {"training.local_batch_size", "16"},
                {"training.threads", "1"},
                {"optimizer.lr", "3e-3"},
                {"lr_scheduler.warmup_steps", "5"},
                {"metrics.log_freq", "1"},
                {"rl.eval_n", "20"},
                {"rl.max_new_tokens", "4"}};
    }
    ConfigOverrides rl_overrides(const std::string& name) const {
        return {{"job.dump_folder", dir_.string()}, {"job.name", name},
                {"task.name", "sum_of_digits"},     {"task.difficulty", "2"},
                {"rl.init", sft_.run_dir},          {"training.steps", "4"},
                {"training.local_batch_size", "6"}, {"training.threads", "1"},
                {"rl.prompts_per_step", "3"},       {"rl.group_size", "4"},
                {"rl.max_new_tokens", "4"},         {"rl.eval_n", "8"},
                {"rl.epochs_per_batch", "2"},       {"optimizer.lr", "1e-3"},
                {"lr_scheduler.warmup_steps", "1"}, {"metrics.log_freq", "1"},
                {"checkpoint.enable", "true"},      {"checkpoint.interval", "2"}};
    }
    static inline fs::path dir_;
    static inline SftSummary sft_;
};

TEST_F(RlRun, SftTrainsOnAnswerTokensAndLeavesACheckpoint) {
    const fs::path run = sft_.run_dir;
    EXPECT_TRUE(fs::exists(run / "checkpoints" / "step-60" / "model.safetensors"));
    EXPECT_TRUE(fs::exists(run / "config.toml"));
    const auto m = metrics_of(run);
    ASSERT_GE(m.size(), 3u);
    EXPECT_EQ(m.front()["step"], 1);
    // The answer loss falls well below its start (uniform over 258 ids: ln 258 = 5.55).
    EXPECT_GT(m.front()["loss"].get<double>(), 4.0);
    EXPECT_LT(m[m.size() - 2]["loss"].get<double>(), 2.5);
    EXPECT_TRUE(m.back().contains("heldout_accuracy"));
    EXPECT_GE(sft_.accuracy, 0.0);
    // The same command again refuses to overwrite the run.
    EXPECT_NE(error_of([&] {
                  run_sft(load_job_config("", sft_overrides("sft")), nullptr);
              }).find("already exists"),
              std::string::npos);
}

TEST_F(RlRun, GrpoWritesMetricsCheckpointsAndResumesExactly) {
    const GrpoSummary a = run_grpo(load_job_config("", rl_overrides("grpo")), nullptr);
    const fs::path run = a.run_dir;
    EXPECT_GE(a.accuracy_before, 0.0);
    EXPECT_GE(a.accuracy_after, 0.0);
    const auto m = metrics_of(run);
    int step_rows = 0;
    for (const auto& row : m) {
        if (!row.contains("reward_mean")) continue;
        step_rows++;
        for (const char* k : {"reward_std", "accuracy", "kl", "clip_frac", "completion_len",
                              "gen_tok_per_s", "train_tok_per_s", "loss", "lr", "grad_norm"})
            EXPECT_TRUE(row.contains(k)) << k;
        EXPECT_GE(row["kl"].get<double>(), 0.0);
        EXPECT_LE(row["completion_len"].get<double>(), 4.0);
        // Two epochs per batch: the second one sees a moved policy, so some tokens may clip,
        // never more than all.
        EXPECT_LE(row["clip_frac"].get<double>(), 1.0);
    }
    EXPECT_EQ(step_rows, 4);
    // The run's config names the init run's model.
    EXPECT_NE(read_bytes(run / "config.toml").find("flavor = \"tiny\""), std::string::npos);

    // Exact resume: drop the last checkpoint, as a kill between steps 2 and 4 would leave it,
    // and rerun the same command; the weights at step 4 must be byte-identical.
    const fs::path last = run / "checkpoints" / "step-4";
    const std::string weights = read_bytes(last / "model.safetensors");
    const std::string opt_state = read_bytes(last / "optimizer.safetensors");
    fs::remove_all(last);
    const GrpoSummary b = run_grpo(load_job_config("", rl_overrides("grpo")), nullptr);
    EXPECT_EQ(b.steps, 4);
    EXPECT_TRUE(read_bytes(last / "model.safetensors") == weights);
    EXPECT_TRUE(read_bytes(last / "optimizer.safetensors") == opt_state);
    int rows_after = 0;
    for (const auto& row : metrics_of(run)) rows_after += row.contains("reward_mean");
    EXPECT_EQ(rows_after, 4);

    // agpt rl eval on the run: its own task and difficulty by default.
    RlEvalOptions o;
    o.run_dir = run.string();
    o.n = 10;
    const RlEvalResult r = evaluate_run_on_task(o);
    EXPECT_EQ(r.task, "sum_of_digits");
    EXPECT_EQ(r.difficulty, 2);
    EXPECT_EQ(r.step, 4);
    EXPECT_EQ(r.accuracy.n, 10);
}

// --init takes a Hugging Face folder as well: the exported SFT model starts GRPO exactly as the
// SFT run folder does (same weights, flavor and tokenizer, so the same step-2 weights).
TEST_F(RlRun, GrpoFromAHuggingFaceFolderEqualsFromTheRun) {
    const fs::path hf = dir_ / "sft_hf";
    export_run_hf(sft_.run_dir, -1, hf.string());
    auto two_steps = [&](const std::string& name, const std::string& init) {
        ConfigOverrides o = rl_overrides(name);  // later overrides win
        o.push_back({"rl.init", init});
        o.push_back({"training.steps", "2"});
        return run_grpo(load_job_config("", o), nullptr);
    };
    const GrpoSummary from_run = two_steps("grpo_from_run", sft_.run_dir);
    const GrpoSummary from_hf = two_steps("grpo_from_hf", hf.string());
    EXPECT_EQ(from_hf.steps, 2);
    const std::string a =
        read_bytes(fs::path(from_run.run_dir) / "checkpoints" / "step-2" / "model.safetensors");
    const std::string b =
        read_bytes(fs::path(from_hf.run_dir) / "checkpoints" / "step-2" / "model.safetensors");
    ASSERT_FALSE(a.empty());
    EXPECT_TRUE(a == b) << "GRPO from the HF export diverged from GRPO from the run";
    EXPECT_NE(read_bytes(fs::path(from_hf.run_dir) / "config.toml").find("flavor = \"tiny\""),
              std::string::npos);
}

TEST_F(RlRun, SftResumesExactly) {
    ConfigOverrides o = sft_overrides("sft_resume");
    for (auto& [k, v] : o)
        if (k == "training.steps") v = "12";
    o.push_back({"checkpoint.enable", "true"});
    o.push_back({"checkpoint.interval", "5"});
    const SftSummary a = run_sft(load_job_config("", o), nullptr);
    const fs::path last = fs::path(a.run_dir) / "checkpoints" / "step-12";
    const std::string weights = read_bytes(last / "model.safetensors");
    fs::remove_all(last);
    fs::remove_all(fs::path(a.run_dir) / "checkpoints" / "step-10");  // resume from step 5
    run_sft(load_job_config("", o), nullptr);
    EXPECT_TRUE(read_bytes(last / "model.safetensors") == weights);
}

// The MiB of activations the run's log reports for its (policy) model.
double logged_activation_mib(const fs::path& log) {
    std::ifstream in(log);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::size_t at = text.find("activations ");
    if (at == std::string::npos) return -1.0;
    return std::stod(text.substr(at + 12));
}

// sft and rl train the policy under [activation_checkpoint] (its activations shrink); full gives
// the same weights, bit for bit.
TEST_F(RlRun, ActivationCheckpointingLeavesTheSameWeights) {
    std::map<std::string, double> activation_mib;
    auto weights_after = [&](ConfigOverrides o, const std::string& name, const std::string& mode,
                             bool grpo) {
        const int steps = grpo ? 2 : 6;
        for (auto& [k, v] : o) {
            if (k == "training.steps") v = std::to_string(steps);
            if (k == "job.name") v = fmt::format("{}_{}", name, mode);
        }
        o.push_back({"checkpoint.enable", "true"});
        o.push_back({"activation_checkpoint.mode", mode});
        const JobConfig cfg = load_job_config("", o);
        const std::string run =
            grpo ? run_grpo(cfg, nullptr).run_dir : run_sft(cfg, nullptr).run_dir;
        activation_mib[name + "_" + mode] =
            logged_activation_mib(fs::path(run) / (grpo ? "rl.log" : "sft.log"));
        return read_bytes(fs::path(run) / "checkpoints" / fmt::format("step-{}", steps) /
                          "model.safetensors");
    };
    const std::string sft_none = weights_after(sft_overrides("x"), "sft_ac", "none", false);
    EXPECT_FALSE(sft_none.empty());
    EXPECT_TRUE(sft_none == weights_after(sft_overrides("x"), "sft_ac", "full", false));
    const std::string rl_none = weights_after(rl_overrides("x"), "rl_ac", "none", true);
    EXPECT_FALSE(rl_none.empty());
    EXPECT_TRUE(rl_none == weights_after(rl_overrides("x"), "rl_ac", "full", true));
    for (const std::string run : {"sft_ac", "rl_ac"}) {
        EXPECT_GT(activation_mib[run + "_full"], 0.0) << run;
        EXPECT_LT(activation_mib[run + "_full"], activation_mib[run + "_none"]) << run;
    }
}

TEST_F(RlRun, BadInputGetsOneClearError) {
    auto with = [&](ConfigOverrides o, std::string key, std::string value) {
        for (auto& [k, v] : o)
            if (k == key) v = value;
        return o;
    };
    EXPECT_NE(error_of([&] {
                  run_grpo(load_job_config("", with(rl_overrides("x"), "task.name", "countdwn")),
                           nullptr);
              }).find("did you mean 'countdown'"),
              std::string::npos);
    EXPECT_NE(error_of([&] {
                  run_grpo(load_job_config("", with(rl_overrides("x"), "rl.init", "/nonexistent")),
                           nullptr);
              }).find("/nonexistent: no such run folder"),
              std::string::npos);
    EXPECT_NE(error_of([&] {
                  run_grpo(load_job_config("", with(rl_overrides("x"), "task.difficulty", "40")),
                           nullptr);
              }).find("task.difficulty = 40"),
              std::string::npos);
    EXPECT_NE(error_of([&] {
                  load_job_config("", {{"rl.grup_size", "4"}});
              }).find("did you mean 'rl.group_size'"),
              std::string::npos);
    EXPECT_NE(error_of([&] {
                  load_job_config("", {{"rl.group_size", "1"}});
              }).find("must be >= 2"),
              std::string::npos);
    EXPECT_NE(error_of([&] {
                  load_job_config("", {{"rl.clip_eps", "1.5"}});
              }).find("rl.clip_eps"),
              std::string::npos);
    EXPECT_FALSE(fs::exists(dir_ / "x"));  // nothing was created
}

}  // namespace
}  // namespace agpt
