// Data parallelism on cuda, over the emulated backend (ctest cuda_data_parallel_emulated:
// tests/cuda/cuda_data_parallel_emu_test.sh). The emulator's device memory is host memory, so
// the MPI communicator stands in for NCCL on the device gradients
// (set_cuda_gradient_communicator_factory); everything else is the trainer's cuda path as on a
// GPU. Run first as one process, which trains the reference (global batch 4 as two
// micro-batches of 2), then under mpirun -np 2 (one micro-batch of 2 per rank, the gradients
// summed after backward and during it), both with AGPT_CUDA_DP_DIR naming a shared folder. The
// same for an MLA + MoE model, whose per-expert loads are summed over the ranks before the
// expert-bias step. ZeRO-1 against ZeRO-0 on two ranks, and its checkpoint resumed on one
// process: a third run of the script (CudaDataParallel.ZeroOneCheckpointResumesOnOneProcess).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>
#include <vector>

#include "core/safetensors.h"
#include "dist/communicator.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/cuda_training.h"
#include "train/trainer.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

JobConfig dp_job(const fs::path& dump, const std::string& name, bool overlap,
                 const std::string& flavor = "tiny", const ConfigOverrides& extra = {}) {
    ConfigOverrides overrides = {{"job.dump_folder", dump.string()},
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
                                 {"parallelism.overlap_grad_reduce", overlap ? "true" : "false"}};
    overrides.insert(overrides.end(), extra.begin(), extra.end());
    return load_job_config("", overrides);
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

// Σ (got − want)² and Σ want² over elements [first, last) (default: all): the relative L2
// difference is the root of their ratio.
struct SquaredDiff {
    double diff2 = 0.0, ref2 = 0.0;
    double relative() const { return std::sqrt(diff2 / ref2); }
};
SquaredDiff squared_diff(const std::vector<float>& got, const std::vector<float>& want,
                         std::size_t first = 0, std::size_t last = std::string::npos) {
    SquaredDiff s;
    for (std::size_t i = first; i < std::min(last, want.size()); i++) {
        const double d = static_cast<double>(got[i]) - want[i];
        s.diff2 += d * d;
        s.ref2 += static_cast<double>(want[i]) * want[i];
    }
    return s;
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

// The logged grad_norm of each step.
std::vector<double> grad_norms(const fs::path& run) {
    std::vector<double> out;
    std::ifstream in(run / "metrics.jsonl");
    for (std::string line; std::getline(in, line);)
        out.push_back(nlohmann::json::parse(line)["grad_norm"].get<double>());
    return out;
}

std::string file_text(const fs::path& p) {
    std::ifstream in(p);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// This rank's dump folder: the job's for rank 0, one of its own for every other rank (where a
// rank that is not the lead must write no run folder).
fs::path rank_dump(const fs::path& dir) {
    const int rank = world_communicator().rank();
    return rank == 0 ? dir : dir / ("rank" + std::to_string(rank));
}

// Trains cfg on every rank with MPI standing in for NCCL on the device gradients (each group's
// sub-communicator of its own ranks, as NCCL would be: its own messages, the same sums), then
// waits for every rank. The stand-in is cleared on the way out, failed assertions included.
TrainSummary train_on_all_ranks(const JobConfig& cfg) {
    set_cuda_gradient_communicator_factory(
        [](Communicator& ranks) { return ranks.split(0, ranks.rank()); });
    struct Clear {
        ~Clear() { set_cuda_gradient_communicator_factory({}); }
    } clear;
    const TrainSummary summary = train(cfg, nullptr);
    world_communicator().barrier();
    return summary;
}

const char* mesh_dir() {
    const char* dir = std::getenv("AGPT_CUDA_DP_DIR");
    if (dir == nullptr)
        ADD_FAILURE() << "run by tests/cuda/cuda_data_parallel_emu_test.sh, which sets "
                         "AGPT_CUDA_DP_DIR";
    return dir;
}

void expect_losses_near(const fs::path& got_run, const fs::path& want_run, double relative,
                        const std::string& what) {
    const std::vector<double> want = losses(want_run), got = losses(got_run);
    ASSERT_EQ(want.size(), 3u) << what;
    ASSERT_EQ(got.size(), want.size()) << what;
    for (std::size_t i = 0; i < want.size(); i++) {
        std::printf("    %s: step %zu loss %.9g against %.9g\n", what.c_str(), i + 1, got[i],
                    want[i]);
        EXPECT_NEAR(got[i], want[i], relative * std::abs(want[i])) << what << ": step " << i + 1;
    }
}

void expect_grad_norms_near(const fs::path& got_run, const fs::path& want_run, double relative,
                            const std::string& what) {
    const std::vector<double> want = grad_norms(want_run), got = grad_norms(got_run);
    ASSERT_EQ(got.size(), want.size()) << what;
    for (std::size_t i = 0; i < want.size(); i++)
        EXPECT_NEAR(got[i], want[i], relative * want[i]) << what << ": step " << i + 1;
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
    for (const bool overlap : {false, true}) {
        const std::string name = overlap ? "dp2_overlap" : "dp2";
        // Rank 1 gets a folder of its own: it must write nothing there.
        const fs::path dump = rank_dump(dir);
        const JobConfig cfg = dp_job(dump, name, overlap);
        EXPECT_EQ(train_on_all_ranks(cfg).steps, 3) << name;
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
        EXPECT_LE(squared_diff(got_params, want_params).relative(), 1e-5)
            << name << ": final parameters";
        const std::string log = file_text(dir / name / "train.log");
        EXPECT_NE(log.find("gradients over mpi"), std::string::npos) << log;
        EXPECT_EQ(log.find("reduced during backward") != std::string::npos, overlap) << log;
    }
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
    const fs::path dump = rank_dump(dir);
    const JobConfig cfg = dp_job(dump, "moe_dp2", true, "moe_tiny");
    EXPECT_EQ(train_on_all_ranks(cfg).steps, 3);
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
    SquaredDiff all;
    for (const ParamView& v : model->param_views()) {
        const auto first = static_cast<long>(v.offset),
                   last = static_cast<long>(v.offset + v.numel());
        if (v.role == "expert_bias") {
            EXPECT_EQ(std::vector<float>(got_params.begin() + first, got_params.begin() + last),
                      std::vector<float>(want_params.begin() + first, want_params.begin() + last))
                << v.name;
            continue;
        }
        const SquaredDiff d = squared_diff(got_params, want_params, v.offset, v.offset + v.numel());
        all.diff2 += d.diff2;
        all.ref2 += d.ref2;
    }
    EXPECT_LE(all.relative(), 1e-5) << "final parameters";
}

// ZeRO-1 (optimizer state split over the two GPUs) against ZeRO-0, with AdamW and with Muon
// (its hidden matrices on one owner each, the rest through its AdamW group) in fp32, and with
// AdamW in bf16 (the all-gathered parameters' bf16 copy). Three steps with a checkpoint after
// steps 2 and 3. The gradient sums are the same bits (two addends: a + b on either rank,
// reduce-scattered or all-reduced); only the norm's summation order differs (each owner sums its
// range, then the two squares are added), and it reaches the update only through the float32
// clipping coefficient, which absorbs a last-bit difference in double. So the losses and both
// checkpoint files are expected to be the same bits.
struct ZeroRun {
    const char* optimizer;
    const char* precision;  // training.mixed_precision_param
};
const ZeroRun kZeroRuns[] = {{"AdamW", "float32"}, {"Muon", "float32"}, {"AdamW", "bfloat16"}};

ConfigOverrides zero_overrides(const ZeroRun& run) {
    return {{"optimizer.name", run.optimizer},
            {"training.mixed_precision_param", run.precision},
            {"checkpoint.interval", "2"}};
}

JobConfig zero_job(const fs::path& dump, const ZeroRun& run, int zero) {
    ConfigOverrides o = zero_overrides(run);
    o.emplace_back("parallelism.zero", std::to_string(zero));
    return dp_job(dump, "zero" + std::to_string(zero) + "_" + run.optimizer + "_" + run.precision,
                  false, "tiny", o);
}

// "optimizer AdamW | state 1.0 MiB | ...": the state's MiB on rank 0.
double logged_state_mib(const fs::path& run) {
    const std::string log = file_text(run / "train.log");
    const std::size_t at = log.find("| state ");
    if (at == std::string::npos) return -1.0;
    return std::stod(log.substr(at + 8));
}

// Every tensor of b is a's, with the same dtype, shape and bytes.
void expect_same_tensors(const fs::path& a_path, const fs::path& b_path) {
    const SafetensorsFile a(a_path.string()), b(b_path.string());
    ASSERT_EQ(a.names(), b.names()) << b_path;
    for (const std::string& name : a.names()) {
        const SafetensorsTensor &ta = a.tensor(name), &tb = b.tensor(name);
        ASSERT_EQ(ta.dtype, tb.dtype) << name;
        ASSERT_EQ(ta.shape, tb.shape) << name;
        EXPECT_EQ(std::memcmp(a.raw(name), b.raw(name), ta.nbytes()), 0)
            << b_path << ": " << name << " differs";
    }
    EXPECT_EQ(a.metadata(), b.metadata()) << b_path;
}

TEST(CudaDataParallel, ZeroOneMatchesZeroZero) {
    const char* dir_env = std::getenv("AGPT_CUDA_DP_DIR");
    ASSERT_NE(dir_env, nullptr) << "run by tests/cuda/cuda_data_parallel_emu_test.sh";
    const fs::path dir = dir_env;
    Communicator& world = world_communicator();
    ASSERT_EQ(world.size(), 2) << "run under mpirun -np 2 by the script";
    const fs::path dump = rank_dump(dir);
    for (const ZeroRun& run : kZeroRuns)
        for (const int zero : {0, 1})
            EXPECT_EQ(train_on_all_ranks(zero_job(dump, run, zero)).steps, 3);
    if (world.rank() != 0) return;
    for (const ZeroRun& run : kZeroRuns) {
        const std::string what = std::string(run.optimizer) + " " + run.precision;
        const fs::path z0 = dir / zero_job(dir, run, 0).job.name,
                       z1 = dir / zero_job(dir, run, 1).job.name;
        const std::vector<double> want = losses(z0), got = losses(z1);
        ASSERT_EQ(want.size(), 3u) << what;
        EXPECT_EQ(got, want) << what << ": ZeRO-1 losses";
        EXPECT_LT(want.back(), want.front()) << what;
        // Rank 0 holds the state of its parameters only.
        const double state0 = logged_state_mib(z0), state1 = logged_state_mib(z1);
        EXPECT_GT(state1, 0.0) << what;
        EXPECT_LT(state1, state0) << what << ": ZeRO-1 state on rank 0";
        for (const char* step : {"step-2", "step-3"})
            for (const char* file : {"model.safetensors", "optimizer.safetensors"})
                expect_same_tensors(z0 / "checkpoints" / step / file,
                                    z1 / "checkpoints" / step / file);
        const std::string log = file_text(z1 / "train.log");
        EXPECT_NE(log.find("gradients over mpi"), std::string::npos) << log;
        EXPECT_NE(log.find(std::string("(") + run.precision + ")"), std::string::npos) << log;
    }
}

// After ZeroOneMatchesZeroZero (the script's third run, one process): each ZeRO-1 run's step-2
// checkpoint, written by two ranks, resumes here (its data order continued for one rank) and
// repeats step 3 within 1e-5 of the two-rank run (the gradient sums' order differs: two
// micro-batches accumulated on one device instead of summed over two).
TEST(CudaDataParallel, ZeroOneCheckpointResumesOnOneProcess) {
    const char* dir_env = std::getenv("AGPT_CUDA_DP_DIR");
    ASSERT_NE(dir_env, nullptr) << "run by tests/cuda/cuda_data_parallel_emu_test.sh";
    const fs::path dir = dir_env;
    ASSERT_EQ(world_communicator().size(), 1);
    for (const ZeroRun& run : kZeroRuns) {
        const std::string what = std::string(run.optimizer) + " " + run.precision;
        const JobConfig two_ranks = zero_job(dir, run, 1);
        const fs::path source = dir / two_ranks.job.name;
        ASSERT_TRUE(fs::exists(source / "checkpoints" / "step-2"))
            << "the two-rank ZeRO-1 runs come first";
        const std::string name = two_ranks.job.name + "_resumed";
        fs::copy(source, dir / name, fs::copy_options::recursive);
        fs::remove_all(dir / name / "checkpoints" / "step-3");
        ConfigOverrides o = zero_overrides(run);
        o.emplace_back("parallelism.zero", "1");
        const JobConfig cfg = dp_job(dir, name, false, "tiny", o);
        EXPECT_EQ(train(cfg, nullptr).steps, 3) << what;
        const std::string log = file_text(dir / name / "train.log");
        EXPECT_NE(log.find("checkpoint written by 2 data-parallel ranks, resumed on 1"),
                  std::string::npos)
            << log;
        const std::vector<double> want = losses(source), got = losses(dir / name);
        ASSERT_EQ(got.size(), want.size()) << what;
        for (std::size_t i = 0; i < 2; i++)
            EXPECT_EQ(got[i], want[i]) << what << ": step " << i + 1 << " kept";
        EXPECT_NEAR(got[2], want[2], 1e-5 * std::abs(want[2])) << what << ": step 3";
        const std::vector<float> want_params = checkpoint_params(two_ranks, 3),
                                 got_params = checkpoint_params(cfg, 3);
        ASSERT_EQ(got_params.size(), want_params.size());
        EXPECT_LE(squared_diff(got_params, want_params).relative(), 1e-5)
            << what << ": step-3 parameters";
    }
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
    const fs::path dump = rank_dump(dir);
    // Every step checkpointed: CudaMesh.ResumeCudaCheckpointsOnCpu resumes step 2 on the CPU.
    JobConfig cfg = dp_job(dump, "moe_ep2", false, "moe_tiny", {{"checkpoint.interval", "1"}});
    cfg.parallelism.expert_parallel_degree = 2;
    EXPECT_EQ(train_on_all_ranks(cfg).steps, 3);
    if (world.rank() != 0) return;
    const JobConfig single = dp_job(dir, "moe_single", false, "moe_tiny");
    expect_losses_near(dir / "moe_ep2", dir / "moe_single", 1e-6, "EP 2");
    EXPECT_EQ(expert_loads(dir / "moe_ep2"), expert_loads(dir / "moe_single"));
    // The clipping norm counts the replicated tensors once and every rank's expert shards.
    expect_grad_norms_near(dir / "moe_ep2", dir / "moe_single", 1e-6, "EP 2");
    const std::vector<float> want_params = checkpoint_params(single, 3),
                             got_params = checkpoint_params(cfg, 3);
    ASSERT_EQ(got_params.size(), want_params.size());
    const auto model = make_job_model(single, 258, 1, 1);
    for (const ParamView& v : model->param_views())
        EXPECT_LE(squared_diff(got_params, want_params, v.offset, v.offset + v.numel()).relative(),
                  1e-6)
            << v.name;
    const std::string log = file_text(dir / "moe_ep2" / "train.log");
    EXPECT_NE(log.find("DP 1 × TP 1 × EP 2 = 2 ranks"), std::string::npos) << log;
}

// got's step-3 checkpoint against want's, both loaded into the one-process model: all the
// parameters within 1e-6 relative, each tensor within 2e-5, but for at most two outlying elements
// per tensor. AdamW moves an element by up to about lr per step whatever its gradient's size, so
// an element whose gradient is near 0, and whose last bits TP's sums round differently, can land
// up to 2·lr per step away (measured: one element of a w2, 5.8e-5 and, after the RMSNorm kernels
// changed their summation order, 1.2e-4 absolute at lr 3e-3; every other element within 1.1e-5).
// An outlier is an element more than 5e-5 away; it is held to that AdamW bound instead.
void expect_tp_checkpoint_close(const JobConfig& got, const JobConfig& want,
                                const std::string& what) {
    const std::vector<float> want_params = checkpoint_params(want, 3),
                             got_params = checkpoint_params(got, 3);
    ASSERT_EQ(got_params.size(), want_params.size()) << what;
    const double adamw_bound = 2.0 * 3 * std::get<double>(want.optimizer.hyper.at("lr"));
    const auto model = make_job_model(want, 258, 1, 1);
    SquaredDiff all;
    for (const ParamView& v : model->param_views()) {
        SquaredDiff d;
        int outliers = 0;
        for (std::size_t i = v.offset; i < v.offset + v.numel(); i++) {
            const double diff = static_cast<double>(got_params[i]) - want_params[i];
            d.ref2 += static_cast<double>(want_params[i]) * want_params[i];
            if (std::abs(diff) > 5e-5) {
                outliers++;
                EXPECT_LE(std::abs(diff), adamw_bound)
                    << what << ": " << v.name << "[" << i - v.offset << "]";
                continue;
            }
            d.diff2 += diff * diff;
        }
        EXPECT_LE(outliers, 2) << what << ": " << v.name;
        EXPECT_LE(d.relative(), 2e-5) << what << ": " << v.name;
        all.diff2 += d.diff2;
        all.ref2 += d.ref2;
    }
    std::printf("    %s: step-3 parameters' relative difference %.3g (outliers aside)\n",
                what.c_str(), all.relative());
    EXPECT_LE(all.relative(), 1e-6) << what << ": step-3 parameters";
}

// Tensor parallelism on cuda: the tiny model's heads, FFN rows and vocabulary over 2 ranks, the
// sums over the device communicator (the MPI one standing in for NCCL), both ranks running the
// same micro-batches. Against TwoRanksMatchOneProcessWithTheSameGlobalBatch's one-process run
// (the same 2 micro-batches of 2 per step): the same losses and clipping norms (replicated
// tensors counted once, shards summed over the group), and the step-3 checkpoint (full tensors,
// gathered from the shards) loads into the one-process model with the same values.
TEST(CudaDataParallel, TensorParallelTwoRanksMatchOneProcess) {
    const char* dir_env = std::getenv("AGPT_CUDA_DP_DIR");
    ASSERT_NE(dir_env, nullptr) << "run by tests/cuda/cuda_data_parallel_emu_test.sh";
    const fs::path dir = dir_env;
    Communicator& world = world_communicator();
    if (world.size() == 1) return;  // the reference is TwoRanksMatchOneProcess's `single`
    ASSERT_EQ(world.size(), 2);
    ASSERT_TRUE(fs::exists(dir / "single" / "metrics.jsonl")) << "the one-process run first";
    const fs::path dump = rank_dump(dir);
    // Every step checkpointed: TensorParallelCheckpointResumesOnOneProcess resumes step 2.
    JobConfig cfg = dp_job(dump, "tp2", false, "tiny", {{"checkpoint.interval", "1"}});
    cfg.parallelism.tensor_parallel_degree = 2;
    EXPECT_EQ(train_on_all_ranks(cfg).steps, 3);
    if (world.rank() != 0) return;
    const JobConfig single = dp_job(dir, "single", false);
    expect_losses_near(dir / "tp2", dir / "single", 1e-6, "TP 2");
    expect_grad_norms_near(dir / "tp2", dir / "single", 1e-6, "TP 2");
    expect_tp_checkpoint_close(cfg, single, "TP 2 against one process");
    const std::string log = file_text(dir / "tp2" / "train.log");
    EXPECT_NE(log.find("DP 1 × TP 2 × EP 1 = 2 ranks"), std::string::npos) << log;
}

// After TensorParallelTwoRanksMatchOneProcess (the script's third run, one process): the TP = 2
// run's step-2 checkpoint (full tensors) resumes on one process with TP = 1 and repeats step 3
// within 1e-6 of the TP = 2 run.
TEST(CudaDataParallel, TensorParallelCheckpointResumesOnOneProcess) {
    const char* dir_env = std::getenv("AGPT_CUDA_DP_DIR");
    ASSERT_NE(dir_env, nullptr) << "run by tests/cuda/cuda_data_parallel_emu_test.sh";
    const fs::path dir = dir_env;
    ASSERT_EQ(world_communicator().size(), 1);
    const fs::path source = dir / "tp2";
    ASSERT_TRUE(fs::exists(source / "checkpoints" / "step-2")) << "the TP = 2 run comes first";
    fs::copy(source, dir / "tp2_resumed", fs::copy_options::recursive);
    fs::remove_all(dir / "tp2_resumed" / "checkpoints" / "step-3");
    const JobConfig cfg = dp_job(dir, "tp2_resumed", false);
    EXPECT_EQ(train(cfg, nullptr).steps, 3);
    const std::vector<double> want = losses(source), got = losses(dir / "tp2_resumed");
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < 2; i++) EXPECT_EQ(got[i], want[i]) << "step " << i + 1 << " kept";
    EXPECT_NEAR(got[2], want[2], 1e-6 * std::abs(want[2])) << "step 3";
    JobConfig tp2 = dp_job(dir, "tp2", false);
    tp2.parallelism.tensor_parallel_degree = 2;
    expect_tp_checkpoint_close(cfg, tp2, "TP 2 resumed on one process");
    const std::string log = file_text(dir / "tp2_resumed" / "train.log");
    EXPECT_NE(log.find("resumed from"), std::string::npos) << log;
}

// The parallelism combinations and bf16 under EP and TP (the script's one-process, two-rank,
// four-rank and resume stages; see cuda_data_parallel_emu_test.sh).

// DP 2 × EP 2 on 4 ranks: moe_tiny's 4 experts 2 per rank, each of the 4 data ranks routing one
// sequence (local batch 1: the loader's interleaving gives the ranks the one process's 4
// windows of each step), the shards' gradients summed over the expert-DP pairs. Against
// MoeTwoRanksMatchOneProcess's one-process run at the same global batch.
TEST(CudaMesh, FourRanksDataTimesExpertParallelMatchOneProcess) {
    const char* dir_env = mesh_dir();
    ASSERT_NE(dir_env, nullptr);
    const fs::path dir = dir_env;
    Communicator& world = world_communicator();
    ASSERT_EQ(world.size(), 4) << "run under mpirun -np 4 by the script";
    ASSERT_TRUE(fs::exists(dir / "moe_single" / "metrics.jsonl")) << "the one-process run first";
    // Every step checkpointed: ResumeDataTimesExpertParallelOnOneProcess resumes step 2.
    JobConfig cfg = dp_job(rank_dump(dir), "moe_dp2_ep2", false, "moe_tiny",
                           {{"training.local_batch_size", "1"}, {"checkpoint.interval", "1"}});
    cfg.parallelism.expert_parallel_degree = 2;
    EXPECT_EQ(train_on_all_ranks(cfg).steps, 3);
    if (world.rank() != 0) return;
    const JobConfig single = dp_job(dir, "moe_single", false, "moe_tiny");
    expect_losses_near(dir / "moe_dp2_ep2", dir / "moe_single", 1e-6, "DP 2 × EP 2");
    const std::vector<nlohmann::json> want_loads = expert_loads(dir / "moe_single");
    ASSERT_EQ(want_loads.size(), 3u);
    EXPECT_EQ(expert_loads(dir / "moe_dp2_ep2"), want_loads);
    expect_grad_norms_near(dir / "moe_dp2_ep2", dir / "moe_single", 1e-6, "DP 2 × EP 2");
    expect_tp_checkpoint_close(cfg, single, "DP 2 × EP 2 against one process");
    const std::string log = file_text(dir / "moe_dp2_ep2" / "train.log");
    EXPECT_NE(log.find("DP 2 × TP 1 × EP 2 = 4 ranks"), std::string::npos) << log;
}

// DP 2 × TP 2 on 4 ranks: the tiny model split over each replica's 2 ranks, the 2 replicas
// summing their shards' gradients. With parallelism.overlap_grad_reduce on, the trainer sums
// after backward all the same (the TP sums hold the compute stream); the run must say so and
// match too. Against TwoRanksMatchOneProcessWithTheSameGlobalBatch's one-process run.
TEST(CudaMesh, FourRanksDataTimesTensorParallelMatchOneProcess) {
    const char* dir_env = mesh_dir();
    ASSERT_NE(dir_env, nullptr);
    const fs::path dir = dir_env;
    Communicator& world = world_communicator();
    ASSERT_EQ(world.size(), 4) << "run under mpirun -np 4 by the script";
    ASSERT_TRUE(fs::exists(dir / "single" / "metrics.jsonl")) << "the one-process run first";
    for (const bool overlap : {false, true}) {
        const std::string name = overlap ? "dp2_tp2_overlap" : "dp2_tp2";
        JobConfig cfg = dp_job(rank_dump(dir), name, overlap);
        cfg.parallelism.tensor_parallel_degree = 2;
        EXPECT_EQ(train_on_all_ranks(cfg).steps, 3) << name;
        if (world.rank() != 0) continue;
        expect_losses_near(dir / name, dir / "single", 1e-6, name);
        expect_grad_norms_near(dir / name, dir / "single", 1e-6, name);
        expect_tp_checkpoint_close(cfg, dp_job(dir, "single", false),
                                   name + " against one process");
        const std::string log = file_text(dir / name / "train.log");
        EXPECT_NE(log.find("DP 2 × TP 2 × EP 1 = 4 ranks"), std::string::npos) << log;
        EXPECT_EQ(log.find("reduced during backward"), std::string::npos) << log;
    }
}

// After the four-rank stage, one process: DP 2 × EP 2's step-2 checkpoint (full tensors, its
// data order continued for one rank) resumes with EP = 1 and repeats step 3.
TEST(CudaMesh, ResumeDataTimesExpertParallelOnOneProcess) {
    const char* dir_env = mesh_dir();
    ASSERT_NE(dir_env, nullptr);
    const fs::path dir = dir_env;
    ASSERT_EQ(world_communicator().size(), 1);
    const fs::path source = dir / "moe_dp2_ep2";
    ASSERT_TRUE(fs::exists(source / "checkpoints" / "step-2")) << "the four-rank run comes first";
    fs::copy(source, dir / "moe_dp2_ep2_resumed", fs::copy_options::recursive);
    fs::remove_all(dir / "moe_dp2_ep2_resumed" / "checkpoints" / "step-3");
    const JobConfig cfg = dp_job(dir, "moe_dp2_ep2_resumed", false, "moe_tiny");
    EXPECT_EQ(train(cfg, nullptr).steps, 3);
    const std::vector<double> want = losses(source), got = losses(dir / "moe_dp2_ep2_resumed");
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < 2; i++) EXPECT_EQ(got[i], want[i]) << "step " << i + 1 << " kept";
    EXPECT_NEAR(got[2], want[2], 1e-6 * std::abs(want[2])) << "step 3";
    EXPECT_EQ(expert_loads(dir / "moe_dp2_ep2_resumed"), expert_loads(source));
    JobConfig four = dp_job(dir, "moe_dp2_ep2", false, "moe_tiny");
    four.parallelism.expert_parallel_degree = 2;
    expect_tp_checkpoint_close(cfg, four, "DP 2 × EP 2 resumed on one process");
    const std::string log = file_text(dir / "moe_dp2_ep2_resumed" / "train.log");
    EXPECT_NE(log.find("checkpoint written by 4 data-parallel ranks, resumed on 1"),
              std::string::npos)
        << log;
}

// bf16 under EP = 2 and TP = 2 on 2 ranks against the bf16 one-process run (trained by the
// one-process stage); the scale is the one-process bf16 run against the fp32 one (measured: the
// step-3 parameters 6.5e-4 (moe_tiny) and 7.0e-4 (tiny) relative L2 apart). Losses within 1e-2
// relative. EP: every expert row is the same bf16 product on either layout, only the fp32
// gradient sums' order differs (measured: the same loss bits, the parameters 3.3e-8 apart), so
// 1e-6. TP: the matrix products are split over the ranks, and each rank's partial result is
// rounded to bf16 before the sum, a rounding the one process never makes: the difference is of
// bf16's size (measured: losses 3.7e-4 relative, the parameters 7.3e-4), so the bound is twice
// the bf16 against fp32 scale.
struct Bf16Case {
    const char* flavor;
    const char* reference;  // the fp32 one-process run
    const char* name;
    int expert_parallel, tensor_parallel;
};
const Bf16Case kBf16Cases[] = {{"moe_tiny", "moe_single", "bf16_moe_ep2", 2, 1},
                               {"tiny", "single", "bf16_tp2", 1, 2}};

JobConfig bf16_job(const fs::path& dump, const Bf16Case& c, const std::string& name) {
    JobConfig cfg =
        dp_job(dump, name, false, c.flavor, {{"training.mixed_precision_param", "bfloat16"}});
    cfg.parallelism.expert_parallel_degree = c.expert_parallel;
    cfg.parallelism.tensor_parallel_degree = c.tensor_parallel;
    return cfg;
}

TEST(CudaMesh, Bf16ExpertAndTensorParallelTwoRanksMatchOneProcess) {
    const char* dir_env = mesh_dir();
    ASSERT_NE(dir_env, nullptr);
    const fs::path dir = dir_env;
    Communicator& world = world_communicator();
    for (const Bf16Case& c : kBf16Cases) {
        const std::string reference = std::string("bf16_") + c.reference;
        Bf16Case one = c;
        one.expert_parallel = one.tensor_parallel = 1;
        if (world.size() == 1) {
            EXPECT_EQ(train(bf16_job(dir, one, reference), nullptr).steps, 3) << reference;
            continue;
        }
        ASSERT_EQ(world.size(), 2);
        ASSERT_TRUE(fs::exists(dir / reference / "metrics.jsonl")) << "the one-process run first";
        const JobConfig cfg = bf16_job(rank_dump(dir), c, c.name);
        EXPECT_EQ(train_on_all_ranks(cfg).steps, 3) << c.name;
        if (world.rank() != 0) continue;
        const JobConfig want = bf16_job(dir, one, reference);
        // The scale: bf16 against fp32 on one process.
        expect_losses_near(dir / reference, dir / c.reference, 1e-1, reference + " against fp32");
        const double bf16_vs_fp32 =
            squared_diff(checkpoint_params(want, 3),
                         checkpoint_params(dp_job(dir, c.reference, false, c.flavor), 3))
                .relative();
        expect_losses_near(dir / c.name, dir / reference, 1e-2, c.name);
        const double parallel_vs_one =
            squared_diff(checkpoint_params(cfg, 3), checkpoint_params(want, 3)).relative();
        std::printf(
            "    %s: step-3 parameters' relative difference %.3g (bf16 against fp32 on "
            "one process: %.3g)\n",
            c.name, parallel_vs_one, bf16_vs_fp32);
        EXPECT_LE(parallel_vs_one, c.expert_parallel > 1 ? 1e-6 : 2.0 * bf16_vs_fp32)
            << c.name << ": step-3 parameters";
        if (c.expert_parallel > 1) {
            EXPECT_EQ(expert_loads(dir / c.name), expert_loads(dir / reference)) << c.name;
        }
    }
}

// After the two-rank stage, one process on the CPU (training.device = cpu): the cuda TP = 2
// and EP = 2 runs' step-2 checkpoints (full tensors) load into a TP = 1, EP = 1 CPU run, which
// repeats step 3 within the cuda fp32 contract (1e-4 relative to the CPU backend).
TEST(CudaMesh, ResumeCudaCheckpointsOnCpu) {
    const char* dir_env = mesh_dir();
    ASSERT_NE(dir_env, nullptr);
    const fs::path dir = dir_env;
    ASSERT_EQ(world_communicator().size(), 1);
    struct Source {
        const char* run;
        const char* flavor;
        int expert_parallel, tensor_parallel;
    };
    for (const Source& s : {Source{"tp2", "tiny", 1, 2}, Source{"moe_ep2", "moe_tiny", 2, 1}}) {
        const fs::path source = dir / s.run;
        ASSERT_TRUE(fs::exists(source / "checkpoints" / "step-2")) << "the two-rank runs first";
        const std::string name = std::string(s.run) + "_on_cpu";
        fs::copy(source, dir / name, fs::copy_options::recursive);
        fs::remove_all(dir / name / "checkpoints" / "step-3");
        const JobConfig cfg = dp_job(dir, name, false, s.flavor, {{"training.device", "cpu"}});
        EXPECT_EQ(train(cfg, nullptr).steps, 3) << name;
        const std::vector<double> want = losses(source), got = losses(dir / name);
        ASSERT_EQ(got.size(), want.size()) << name;
        for (std::size_t i = 0; i < 2; i++)
            EXPECT_EQ(got[i], want[i]) << name << ": step " << i + 1 << " kept";
        std::printf("    %s: step 3 loss %.9g against %.9g\n", name.c_str(), got[2], want[2]);
        EXPECT_NEAR(got[2], want[2], 1e-4 * std::abs(want[2])) << name << ": step 3";
        JobConfig cuda = dp_job(dir, s.run, false, s.flavor);
        cuda.parallelism.expert_parallel_degree = s.expert_parallel;
        cuda.parallelism.tensor_parallel_degree = s.tensor_parallel;
        const double d =
            squared_diff(checkpoint_params(cfg, 3), checkpoint_params(cuda, 3)).relative();
        std::printf("    %s: step-3 parameters' relative difference %.3g\n", name.c_str(), d);
        EXPECT_LE(d, 1e-4) << name << ": step-3 parameters";
        const std::string log = file_text(dir / name / "train.log");
        EXPECT_NE(log.find("resumed from"), std::string::npos) << log;
    }
}

}  // namespace
}  // namespace agpt
