// `agpt sft` and `agpt rl` with training.device = cuda (rl/sft.h, rl/grpo.h over
// train/cuda_training.h) against the same jobs on the CPU, fp32: the losses within 1e-4 and the
// same held-out completions, rewards and accuracy. Training runs on the device; sampling runs on
// the CPU twin with the weights downloaded after each optimizer step, so the sampled tokens are
// the CPU run's as long as no draw falls within rounding (1e-7) of a boundary: true for these
// seeds, and the comparison of completions and rewards below says so when it is not.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "cuda_test_util.h"
#include "model/model_args.h"
#include "model/transformer.h"
#include "rl/grpo.h"
#include "rl/rollout.h"
#include "rl/sft.h"
#include "train/config.h"
#include "train/cuda_training.h"
#include "train/trainer.h"

namespace agpt::cuda::test {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("agpt_cuda_rl_test_" + name);
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

std::vector<nlohmann::json> metrics_of(const fs::path& run) {
    std::vector<nlohmann::json> out;
    std::ifstream in(run / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
}

// The log's lines that show held-out completions ("prompt → completion (reward r)").
std::vector<std::string> completion_lines(const fs::path& log) {
    std::vector<std::string> out;
    std::ifstream in(log);
    for (std::string line; std::getline(in, line);)
        if (line.find("(reward ") != std::string::npos) out.push_back(line);
    return out;
}

// A value of `key` per metrics row that has it.
std::vector<double> column(const std::vector<nlohmann::json>& rows, const char* key) {
    std::vector<double> out;
    for (const auto& r : rows)
        if (r.contains(key)) out.push_back(r[key].get<double>());
    return out;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double rel,
                  const std::string& what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    ASSERT_FALSE(want.empty()) << what;
    for (std::size_t i = 0; i < want.size(); i++)
        EXPECT_NEAR(got[i], want[i], rel * std::max(std::abs(want[i]), 1e-3))
            << what << " [" << i << "]";
}

ConfigOverrides sft_job(const fs::path& dump, const std::string& name, const std::string& device,
                        int steps) {
    return {{"job.dump_folder", dump.string()},
            {"job.name", name},
            {"model.flavor", "tiny"},
            {"task.name", "sum_of_digits"},
            {"task.difficulty", "2"},
            {"training.device", device},
            {"training.mixed_precision_param", "float32"},
            {"training.steps", std::to_string(steps)},
            {"training.local_batch_size", "4"},
            {"training.threads", "1"},
            {"optimizer.lr", "1e-2"},
            {"lr_scheduler.warmup_steps", "1"},
            {"metrics.log_freq", "1"},
            {"rl.eval_n", "4"},
            {"rl.max_new_tokens", "4"}};
}

TEST(CudaRl, SftMatchesTheCpuRun) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const fs::path dump = fresh_dir("sft");
    const SftSummary cpu = run_sft(load_job_config("", sft_job(dump, "cpu", "cpu", 3)), nullptr);
    const SftSummary gpu = run_sft(load_job_config("", sft_job(dump, "gpu", "cuda", 3)), nullptr);
    const auto m_cpu = metrics_of(cpu.run_dir), m_gpu = metrics_of(gpu.run_dir);
    expect_close(column(m_gpu, "loss"), column(m_cpu, "loss"), 1e-4, "sft loss");
    expect_close(column(m_gpu, "grad_norm"), column(m_cpu, "grad_norm"), 1e-4, "sft grad_norm");
    // Three steps at lr 1e-2 move the loss: the runs compare trained weights, not the initial
    // ones, and the held-out completions are sampled with what the device trained.
    const auto loss = column(m_cpu, "loss");
    EXPECT_LT(loss.back(), loss.front());
    EXPECT_EQ(gpu.accuracy, cpu.accuracy);
    const auto lines_cpu = completion_lines(fs::path(cpu.run_dir) / "sft.log");
    EXPECT_FALSE(lines_cpu.empty());
    EXPECT_EQ(completion_lines(fs::path(gpu.run_dir) / "sft.log"), lines_cpu);
    fs::remove_all(dump);
}

// GRPO from one CPU sft run (partly right, so that groups have mixed rewards and the advantages
// are not all 0), two steps of two epochs each (the re-scoring of the moved policy), the KL term
// on: the same rewards, losses within 1e-4; and a bf16 step. optimizer.eps 1e-4: the policy
// gradient nearly cancels in many weights, and with eps 1e-8 AdamW's first step turns such a
// gradient into a ±lr update whose sign rounding decides, so the two devices' weights would part by
// lr there (measured: losses 1.4e-4 apart after one step); with eps 1e-4 they stay ~1e-6 apart.
TEST(CudaRl, GrpoMatchesTheCpuRun) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const fs::path dump = fresh_dir("grpo");
    ConfigOverrides sft = sft_job(dump, "sft", "cpu", 150);
    sft.push_back({"training.local_batch_size", "16"});
    sft.push_back({"optimizer.lr", "3e-3"});
    sft.push_back({"rl.eval_n", "0"});
    const SftSummary init = run_sft(load_job_config("", sft), nullptr);
    auto rl_job = [&](const std::string& name, const std::string& device) -> ConfigOverrides {
        return {{"job.dump_folder", dump.string()},
                {"job.name", name},
                {"task.name", "sum_of_digits"},
                {"task.difficulty", "2"},
                {"rl.init", init.run_dir},
                {"training.device", device},
                {"training.mixed_precision_param", "float32"},
                {"training.steps", "2"},
                {"training.local_batch_size", "8"},
                {"training.threads", "1"},
                {"rl.prompts_per_step", "2"},
                {"rl.group_size", "4"},
                {"rl.max_new_tokens", "4"},
                {"rl.eval_n", "2"},
                {"rl.epochs_per_batch", "2"},
                {"optimizer.lr", "1e-3"},
                {"optimizer.eps", "1e-4"},
                {"lr_scheduler.warmup_steps", "1"},
                {"metrics.log_freq", "1"}};
    };
    const GrpoSummary cpu = run_grpo(load_job_config("", rl_job("rl_cpu", "cpu")), nullptr);
    const GrpoSummary gpu = run_grpo(load_job_config("", rl_job("rl_gpu", "cuda")), nullptr);
    const auto m_cpu = metrics_of(cpu.run_dir), m_gpu = metrics_of(gpu.run_dir);
    EXPECT_EQ(column(m_gpu, "reward_mean"), column(m_cpu, "reward_mean"));
    EXPECT_EQ(column(m_gpu, "completion_len"), column(m_cpu, "completion_len"));
    const auto reward_std = column(m_cpu, "reward_std");
    EXPECT_GT(*std::max_element(reward_std.begin(), reward_std.end()), 0.0)
        << "no group with mixed rewards: the policy gradient would be 0";
    expect_close(column(m_gpu, "loss"), column(m_cpu, "loss"), 1e-4, "grpo loss");
    expect_close(column(m_gpu, "kl"), column(m_cpu, "kl"), 1e-4, "grpo kl");
    expect_close(column(m_gpu, "grad_norm"), column(m_cpu, "grad_norm"), 1e-4, "grpo grad_norm");
    EXPECT_EQ(gpu.accuracy_before, cpu.accuracy_before);
    EXPECT_EQ(gpu.accuracy_after, cpu.accuracy_after);
    EXPECT_EQ(completion_lines(fs::path(gpu.run_dir) / "rl.log"),
              completion_lines(fs::path(cpu.run_dir) / "rl.log"));

    // bf16: the reference scores on the device in the policy's precision, so in the first
    // epoch π_ref = π_old bit for bit and the KL is exactly 0; the first step's rollouts come
    // from the loaded weights on the CPU twin, the CPU run's.
    ConfigOverrides bf16 = rl_job("rl_bf16", "cuda");
    bf16.push_back({"training.mixed_precision_param", "bfloat16"});
    bf16.push_back({"training.steps", "1"});
    bf16.push_back({"rl.epochs_per_batch", "1"});
    bf16.push_back({"rl.eval_n", "0"});
    const auto m_bf16 = metrics_of(run_grpo(load_job_config("", bf16), nullptr).run_dir);
    ASSERT_EQ(column(m_bf16, "kl").size(), 1u);
    EXPECT_EQ(column(m_bf16, "kl")[0], 0.0);
    EXPECT_EQ(column(m_bf16, "reward_mean")[0], column(m_cpu, "reward_mean")[0]);
    EXPECT_TRUE(std::isfinite(column(m_bf16, "loss")[0]));
    fs::remove_all(dump);
}

// The CPU twin that samples follows the device: after each optimizer step on the device,
// sampling_transformer holds the device's weights (the CPU model's after the same steps, 1e-5)
// and samples what the CPU model samples.
TEST(CudaRl, SamplingTwinFollowsTheDeviceAfterEachStep) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const JobConfig cfg = load_job_config("", {{"model.flavor", "tiny"},
                                               {"training.device", "cuda"},
                                               {"training.mixed_precision_param", "float32"},
                                               {"optimizer.lr", "1e-2"}});
    ModelArgs args = resolve_model_args(cfg.model.flavor, cfg.model.switches());
    args.vocab_size = 258;
    const int B = 2, T = 8;
    const auto gpu = make_rl_model(cfg, args, B, T);
    Transformer cpu(args, B, T);
    gpu->init_weights("agpt", 7);
    cpu.init_weights("agpt", 7);
    const std::vector<float> initial = cpu.params();
    const auto gpu_opt = make_cuda_optimizer(cfg, *gpu);
    const auto cpu_opt = make_model_optimizer(cfg, cpu);
    Rng rng(31);
    const std::vector<int32_t> prompt = random_tokens(5, args.vocab_size, rng);
    for (int step = 1; step <= 2; step++) {
        const auto tokens = random_tokens(B * T, args.vocab_size, rng);
        const auto targets = random_tokens(B * T, args.vocab_size, rng);
        const auto weights = random_floats(B * T, rng, -1.0f, 1.0f);
        gpu->zero_grad();
        cpu.zero_grad();
        model_forward_backward_weighted(*gpu, tokens.data(), targets.data(), weights.data(), B, T);
        model_forward_backward_weighted(cpu, tokens.data(), targets.data(), weights.data(), B, T);
        gpu_opt->step(1.0);
        cpu_opt->step(1.0);
        const std::vector<float>& twin = sampling_transformer(*gpu).params();
        ASSERT_EQ(twin.size(), cpu.params().size());
        double diff = 0.0, moved = 0.0;
        for (std::size_t i = 0; i < twin.size(); i++) {
            diff = std::max(diff, static_cast<double>(std::abs(twin[i] - cpu.params()[i])));
            moved = std::max(moved, static_cast<double>(std::abs(cpu.params()[i] - initial[i])));
        }
        EXPECT_LT(diff, 1e-5) << "step " << step;
        EXPECT_GT(moved, 1e-3) << "step " << step;
        EXPECT_EQ(sample_completion(sampling_transformer(*gpu), prompt, 6, 1.0, -1, 40 + step),
                  sample_completion(cpu, prompt, 6, 1.0, -1, 40 + step))
            << "step " << step;
    }
}

// What cuda does not run is refused before any work, naming the key.
TEST(CudaRl, RefusesWhatCudaLacksBeforeTheRunFolder) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const fs::path dump = fresh_dir("refuse");
    ConfigOverrides job = sft_job(dump, "muon", "cuda", 1);
    job.push_back({"optimizer.name", "Muon"});
    job.push_back({"optimizer.ns_precision", "fp64"});
    try {
        run_sft(load_job_config("", job), nullptr);
        ADD_FAILURE() << "sft with Muon's fp64 Newton-Schulz ran on cuda";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("optimizer.ns_precision = fp64"), std::string::npos)
            << e.what();
    }
    EXPECT_FALSE(fs::exists(dump / "muon"));
    fs::remove_all(dump);
}

}  // namespace
}  // namespace agpt::cuda::test
