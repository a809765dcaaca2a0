// Data parallelism on cuda, over the emulated backend (ctest cuda_data_parallel_emulated:
// tests/cuda/cuda_data_parallel_emu_test.sh). The emulator's device memory is host memory, so
// the MPI communicator stands in for NCCL on the device gradients
// (set_cuda_gradient_communicator_factory); everything else is the trainer's cuda path as on a
// GPU. Run first as one process, which trains the reference (global batch 4 as two
// micro-batches of 2), then under mpirun -np 2 (one micro-batch of 2 per rank, the gradients
// summed after backward and during it), both with AGPT_CUDA_DP_DIR naming a shared folder. The
// same for an MLA + MoE model, whose per-expert loads are summed over the ranks before the
// expert-bias step.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/cuda_training.h"
#include "train/trainer.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

JobConfig dp_job(const fs::path& dump, const std::string& name, bool overlap,
                 const std::string& flavor = "tiny") {
    return load_job_config("", {{"job.dump_folder", dump.string()},
                                {"job.name", name},
                                {"model.flavor", flavor},
                                {"training.device", "cuda"},
                                {"training.mixed_precision_param", "float32"},
                                {"training.local_batch_size", "2"},
                                {"training.global_batch_size", "4"},
                                {"training.seq_len", "16"},
                                {"training.steps", "3"},
                                {"training.threads", "1"},
                                {"optimizer.lr", "3e-3"},
                                {"lr_scheduler.warmup_steps", "1"},
                                {"validation.enable", "false"},
                                {"metrics.log_freq", "1"},
                                {"checkpoint.enable", "true"},
                                {"checkpoint.interval", "3"},
                                {"sample.max_new_tokens", "0"},
                                // ~5k floats: the tiny model's gradients in a few dozen buckets.
                                {"parallelism.bucket_mb", "0.02"},
                                {"parallelism.overlap_grad_reduce", overlap ? "true" : "false"}});
}

std::vector<double> losses(const fs::path& run) {
    std::vector<double> out;
    std::ifstream in(run / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
        const auto row = nlohmann::json::parse(line);
        if (row.contains("loss")) out.push_back(row["loss"].get<double>());
    }
    return out;
}

std::vector<float> checkpoint_params(const JobConfig& cfg, int step) {
    const auto model = make_job_model(cfg, 258, 1, 1);
    load_model_weights((fs::path(cfg.job.dump_folder) / cfg.job.name / cfg.checkpoint.folder /
                        ("step-" + std::to_string(step)))
                           .string(),
                       *model);
    return model->params();
}

// Each logged step's per-expert loads (the global ones: summed over the ranks).
std::vector<nlohmann::json> expert_loads(const fs::path& run) {
    std::vector<nlohmann::json> out;
    std::ifstream in(run / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
        const auto row = nlohmann::json::parse(line);
        if (row.contains("moe_tokens_per_expert")) out.push_back(row["moe_tokens_per_expert"]);
    }
    return out;
}

std::string file_text(const fs::path& p) {
    std::ifstream in(p);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(CudaDataParallel, TwoRanksMatchOneProcessWithTheSameGlobalBatch) {
    const char* dir_env = std::getenv("AGPT_CUDA_DP_DIR");
    ASSERT_NE(dir_env, nullptr) << "run by tests/cuda/cuda_data_parallel_emu_test.sh, which sets "
                                   "AGPT_CUDA_DP_DIR";
    const fs::path dir = dir_env;
    Communicator& world = world_communicator();
    const JobConfig single = dp_job(dir, "single", false);
    if (world.size() == 1) {
        EXPECT_EQ(train(single, nullptr).steps, 3);
        return;
    }
    ASSERT_EQ(world.size(), 2);
    ASSERT_TRUE(fs::exists(dir / "single" / "metrics.jsonl")) << "the one-process run comes first";
    const std::vector<double> want = losses(dir / "single");
    ASSERT_EQ(want.size(), 3u);
    const std::vector<float> want_params = checkpoint_params(single, 3);
    // A sub-group of the same ranks, as NCCL would be: its own messages, the same sums.
    set_cuda_gradient_communicator_factory(
        [](Communicator& data_ranks) { return data_ranks.split(0, data_ranks.rank()); });
    for (const bool overlap : {false, true}) {
        const std::string name = overlap ? "dp2_overlap" : "dp2";
        // Rank 1 gets a folder of its own: it must write nothing there.
        const fs::path dump = world.rank() == 0 ? dir : dir / "rank1";
        const JobConfig cfg = dp_job(dump, name, overlap);
        EXPECT_EQ(train(cfg, nullptr).steps, 3) << name;
        world.barrier();
        if (world.rank() != 0) {
            EXPECT_FALSE(fs::exists(dump / name)) << name << ": rank 1 wrote a run folder";
            continue;
        }
        const std::vector<double> got = losses(dir / name);
        ASSERT_EQ(got.size(), want.size()) << name;
        for (std::size_t i = 0; i < want.size(); i++)
            EXPECT_NEAR(got[i], want[i], 1e-5 * std::abs(want[i])) << name << " step " << i + 1;
        EXPECT_LT(want.back(), want.front());  // three AdamW steps moved the model
        const std::vector<float> got_params = checkpoint_params(cfg, 3);
        ASSERT_EQ(got_params.size(), want_params.size());
        double diff2 = 0.0, ref2 = 0.0;
        for (std::size_t i = 0; i < want_params.size(); i++) {
            const double d = static_cast<double>(got_params[i]) - want_params[i];
            diff2 += d * d;
            ref2 += static_cast<double>(want_params[i]) * want_params[i];
        }
        EXPECT_LE(std::sqrt(diff2 / ref2), 1e-5) << name << ": final parameters";
        const std::string log = file_text(dir / name / "train.log");
        EXPECT_NE(log.find("gradients over mpi"), std::string::npos) << log;
        EXPECT_EQ(log.find("reduced during backward") != std::string::npos, overlap) << log;
    }
    set_cuda_gradient_communicator_factory({});
}

// moe_tiny: the loads each step are the one process's (both ranks' summed), so the expert
// biases come out the same bits; losses and the other parameters as for the dense model.
TEST(CudaDataParallel, MoeTwoRanksMatchOneProcess) {
    const char* dir_env = std::getenv("AGPT_CUDA_DP_DIR");
    ASSERT_NE(dir_env, nullptr) << "run by tests/cuda/cuda_data_parallel_emu_test.sh";
    const fs::path dir = dir_env;
    Communicator& world = world_communicator();
    const JobConfig single = dp_job(dir, "moe_single", false, "moe_tiny");
    if (world.size() == 1) {
        EXPECT_EQ(train(single, nullptr).steps, 3);
        return;
    }
    ASSERT_EQ(world.size(), 2);
    set_cuda_gradient_communicator_factory(
        [](Communicator& data_ranks) { return data_ranks.split(0, data_ranks.rank()); });
    const fs::path dump = world.rank() == 0 ? dir : dir / "rank1";
    const JobConfig cfg = dp_job(dump, "moe_dp2", true, "moe_tiny");
    EXPECT_EQ(train(cfg, nullptr).steps, 3);
    world.barrier();
    set_cuda_gradient_communicator_factory({});
    if (world.rank() != 0) return;
    const std::vector<double> want = losses(dir / "moe_single"), got = losses(dir / "moe_dp2");
    ASSERT_EQ(want.size(), 3u);
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < want.size(); i++)
        EXPECT_NEAR(got[i], want[i], 1e-5 * std::abs(want[i])) << "step " << i + 1;
    const std::vector<nlohmann::json> want_loads = expert_loads(dir / "moe_single");
    ASSERT_EQ(want_loads.size(), 3u);
    EXPECT_EQ(expert_loads(dir / "moe_dp2"), want_loads);
    const std::vector<float> want_params = checkpoint_params(single, 3),
                             got_params = checkpoint_params(cfg, 3);
    ASSERT_EQ(got_params.size(), want_params.size());
    const auto model = make_job_model(single, 258, 1, 1);
    double diff2 = 0.0, ref2 = 0.0;
    for (const ParamView& v : model->param_views()) {
        const auto first = static_cast<long>(v.offset),
                   last = static_cast<long>(v.offset + v.numel());
        if (v.role == "expert_bias") {
            EXPECT_EQ(std::vector<float>(got_params.begin() + first, got_params.begin() + last),
                      std::vector<float>(want_params.begin() + first, want_params.begin() + last))
                << v.name;
            continue;
        }
        for (long i = first; i < last; i++) {
            const double d = static_cast<double>(got_params[i]) - want_params[i];
            diff2 += d * d;
            ref2 += static_cast<double>(want_params[i]) * want_params[i];
        }
    }
    EXPECT_LE(std::sqrt(diff2 / ref2), 1e-5) << "final parameters";
}

// Expert parallelism on cuda: moe_tiny's 4 routed experts over 2 ranks (2 each), the tokens
// exchanged over the device communicator (the MPI one standing in for NCCL), each rank routing
// its own micro-batch of 2. Against MoeTwoRanksMatchOneProcess's one-process run: the same
// losses and loads, and the checkpoint (full tensors, gathered from the shards) loads into the
// one-process model with the same values.
TEST(CudaDataParallel, MoeExpertParallelTwoRanksMatchOneProcess) {
    const char* dir_env = std::getenv("AGPT_CUDA_DP_DIR");
    ASSERT_NE(dir_env, nullptr) << "run by tests/cuda/cuda_data_parallel_emu_test.sh";
    const fs::path dir = dir_env;
    Communicator& world = world_communicator();
    if (world.size() == 1) return;  // the reference is MoeTwoRanksMatchOneProcess's moe_single
    ASSERT_EQ(world.size(), 2);
    ASSERT_TRUE(fs::exists(dir / "moe_single" / "metrics.jsonl")) << "the one-process run first";
    set_cuda_gradient_communicator_factory(
        [](Communicator& ranks) { return ranks.split(0, ranks.rank()); });
    const fs::path dump = world.rank() == 0 ? dir : dir / "rank1";
    JobConfig cfg = dp_job(dump, "moe_ep2", false, "moe_tiny");
    cfg.parallelism.expert_parallel_degree = 2;
    EXPECT_EQ(train(cfg, nullptr).steps, 3);
    world.barrier();
    set_cuda_gradient_communicator_factory({});
    if (world.rank() != 0) return;
    const JobConfig single = dp_job(dir, "moe_single", false, "moe_tiny");
    const std::vector<double> want = losses(dir / "moe_single"), got = losses(dir / "moe_ep2");
    ASSERT_EQ(want.size(), 3u);
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < want.size(); i++)
        EXPECT_NEAR(got[i], want[i], 1e-6 * std::abs(want[i])) << "step " << i + 1;
    EXPECT_EQ(expert_loads(dir / "moe_ep2"), expert_loads(dir / "moe_single"));
    // The clipping norm counts the replicated tensors once and every rank's expert shards.
    auto grad_norms = [](const fs::path& run) {
        std::vector<double> out;
        std::ifstream in(run / "metrics.jsonl");
        for (std::string line; std::getline(in, line);)
            out.push_back(nlohmann::json::parse(line)["grad_norm"].get<double>());
        return out;
    };
    const std::vector<double> want_norms = grad_norms(dir / "moe_single"),
                              got_norms = grad_norms(dir / "moe_ep2");
    ASSERT_EQ(got_norms.size(), want_norms.size());
    for (std::size_t i = 0; i < want_norms.size(); i++)
        EXPECT_NEAR(got_norms[i], want_norms[i], 1e-6 * want_norms[i]) << "step " << i + 1;
    const std::vector<float> want_params = checkpoint_params(single, 3),
                             got_params = checkpoint_params(cfg, 3);
    ASSERT_EQ(got_params.size(), want_params.size());
    const auto model = make_job_model(single, 258, 1, 1);
    for (const ParamView& v : model->param_views()) {
        double diff2 = 0.0, ref2 = 0.0;
        for (std::size_t i = v.offset; i < v.offset + v.numel(); i++) {
            const double d = static_cast<double>(got_params[i]) - want_params[i];
            diff2 += d * d;
            ref2 += static_cast<double>(want_params[i]) * want_params[i];
        }
        EXPECT_LE(std::sqrt(diff2 / ref2), 1e-6) << v.name;
    }
    const std::string log = file_text(dir / "moe_ep2" / "train.log");
    EXPECT_NE(log.find("DP 1 × TP 1 × EP 2 = 2 ranks"), std::string::npos) << log;
}

}  // namespace
}  // namespace agpt
