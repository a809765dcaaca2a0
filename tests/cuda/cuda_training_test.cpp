// `agpt train --training.device cuda` (train/cuda_training.h) against the CPU trainer on the same
// tiny job: fp32 losses, gradient norms, validation loss and final parameters within 1e-4 and
// the same sample; bf16 losses within 1e-2 of fp32; checkpoints that move between the devices
// bit for bit (parameters and AdamW m/v) and runs that resume on the other device where they
// stopped; and the refusal of what the GPU path lacks, naming the key.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../scoped_env.h"
#include "core/error.h"
#include "cuda_test_util.h"
#include "tools/bench.h"
#include "tools/lr_find.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/cuda_training.h"
#include "train/trainer.h"

namespace agpt::cuda::test {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("agpt_cuda_training_test_" + name);
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

// Tiny (the emulator runs every kernel on one CPU thread): 2 layers, dim 64, the byte
// tokenizer's 258 tokens, two micro-batches of 2×16 per step, validation and a checkpoint at
// the last step.
JobConfig tiny_job(const fs::path& dump, const std::string& name, const std::string& device,
                   int steps, const std::string& precision = "float32") {
    return load_job_config("", {{"job.dump_folder", dump.string()},
                                {"job.name", name},
                                {"model.flavor", "tiny"},
                                {"training.device", device},
                                {"training.mixed_precision_param", precision},
                                {"training.local_batch_size", "2"},
                                {"training.global_batch_size", "4"},
                                {"training.seq_len", "16"},
                                {"training.steps", std::to_string(steps)},
                                {"training.threads", "1"},
                                {"optimizer.lr", "3e-3"},
                                {"lr_scheduler.warmup_steps", "1"},
                                {"validation.freq", "3"},
                                {"validation.steps", "1"},
                                {"metrics.log_freq", "1"},
                                {"checkpoint.enable", "true"},
                                {"checkpoint.interval", "3"},
                                {"sample.max_new_tokens", "0"}});
}

struct Curve {
    std::vector<double> loss, grad_norm, val_loss;
};

Curve read_curve(const fs::path& run) {
    Curve c;
    std::ifstream in(run / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
        const auto row = nlohmann::json::parse(line);
        if (row.contains("loss")) {
            c.loss.push_back(row["loss"].get<double>());
            c.grad_norm.push_back(row["grad_norm"].get<double>());
        }
        if (row.contains("val_loss")) c.val_loss.push_back(row["val_loss"].get<double>());
    }
    return c;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double rel,
                  const char* what) {
    ASSERT_EQ(got.size(), want.size()) << what;
    ASSERT_FALSE(want.empty()) << what;
    for (std::size_t i = 0; i < want.size(); i++)
        EXPECT_NEAR(got[i], want[i], rel * std::abs(want[i])) << what << " [" << i << "]";
}

// The largest |a[i] − b[i]| (a and b of one size).
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    double d = 0.0;
    for (std::size_t i = 0; i < a.size(); i++)
        d = std::max(d, static_cast<double>(std::abs(a[i] - b[i])));
    return d;
}

// A checkpoint's weights, read into the CPU model.
std::vector<float> checkpoint_params(const JobConfig& cfg, const fs::path& step_dir) {
    const auto model = make_job_model(cfg, 258, 1, 1);
    load_model_weights(step_dir.string(), *model);
    return model->params();
}

fs::path step_dir(const JobConfig& cfg, int step) {
    return fs::path(cfg.job.dump_folder) / cfg.job.name / cfg.checkpoint.folder /
           ("step-" + std::to_string(step));
}

TEST(CudaTraining, Fp32MatchesTheCpuTrainer) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const fs::path dump = fresh_dir("fp32");
    JobConfig cpu = tiny_job(dump, "cpu", "cpu", 3), gpu = tiny_job(dump, "gpu", "cuda", 3);
    cpu.sample.max_new_tokens = gpu.sample.max_new_tokens = 6;
    const TrainSummary s_cpu = train(cpu, nullptr), s_gpu = train(gpu, nullptr);
    EXPECT_EQ(s_gpu.steps, 3);
    // Sampling from the device model's last-position logits draws what the CPU model draws
    // (same seed; the logits differ by rounding only).
    EXPECT_EQ(s_gpu.sample.size(), 6u);
    EXPECT_EQ(s_gpu.sample, s_cpu.sample);
    const Curve c_cpu = read_curve(dump / "cpu"), c_gpu = read_curve(dump / "gpu");
    expect_close(c_gpu.loss, c_cpu.loss, 1e-4, "loss");
    expect_close(c_gpu.grad_norm, c_cpu.grad_norm, 1e-4, "grad_norm");
    expect_close(c_gpu.val_loss, c_cpu.val_loss, 1e-4, "val_loss");
    // The loss moved: three AdamW steps at lr 3e-3 are visible (the comparison is not of two
    // untrained models).
    EXPECT_LT(c_cpu.loss.back(), c_cpu.loss.front());

    const std::vector<float> p_cpu = checkpoint_params(cpu, step_dir(cpu, 3)),
                             p_gpu = checkpoint_params(gpu, step_dir(gpu, 3));
    ASSERT_EQ(p_gpu.size(), p_cpu.size());
    EXPECT_LT(max_abs_diff(p_gpu, p_cpu), 1e-4);

    // The run's metrics carry the device's memory and an MFU against its peak.
    std::ifstream in(dump / "gpu" / "metrics.jsonl");
    std::string first;
    std::getline(in, first);
    const auto row = nlohmann::json::parse(first);
    EXPECT_TRUE(row.contains("gpu_mem_gib"));
    EXPECT_GT(row["mfu"].get<double>(), 0.0);
    fs::remove_all(dump);
}

// Muon (Newton–Schulz through the device's GEMMs, the rest routed to AdamW), an element-wise
// optimizer and SophiaG (its Hessian hook samples labels from the device model's logits after
// every step) on cuda follow the CPU trainer: losses, gradient norms and final weights within
// 1e-4.
TEST(CudaTraining, MuonLionAndSophiaGMatchTheCpuTrainer) {
    AGPT_REQUIRE_CUDA_DEVICE();
    for (const std::string optimizer : {"Muon", "Lion", "SophiaG"}) {
        const fs::path dump = fresh_dir("optimizer_" + optimizer);
        JobConfig cpu = tiny_job(dump, "cpu", "cpu", 3), gpu = tiny_job(dump, "gpu", "cuda", 3);
        for (JobConfig* cfg : {&cpu, &gpu}) {
            cfg->optimizer.name = optimizer;
            if (optimizer == "SophiaG") cfg->optimizer.hyper["hessian_interval"] = 1.0;
        }
        train(cpu, nullptr);
        train(gpu, nullptr);
        const Curve c_cpu = read_curve(dump / "cpu"), c_gpu = read_curve(dump / "gpu");
        expect_close(c_gpu.loss, c_cpu.loss, 1e-4, (optimizer + " loss").c_str());
        expect_close(c_gpu.grad_norm, c_cpu.grad_norm, 1e-4, (optimizer + " grad_norm").c_str());
        EXPECT_LT(c_cpu.loss.back(), c_cpu.loss.front()) << optimizer;
        const std::vector<float> p_cpu = checkpoint_params(cpu, step_dir(cpu, 3)),
                                 p_gpu = checkpoint_params(gpu, step_dir(gpu, 3));
        ASSERT_EQ(p_gpu.size(), p_cpu.size());
        EXPECT_LT(max_abs_diff(p_gpu, p_cpu), 1e-4) << optimizer;
        fs::remove_all(dump);
    }
}

// AdamW, and Muon, whose Newton–Schulz runs through bf16 GEMMs in bf16 mode.
TEST(CudaTraining, Bf16LossesWithin1e2OfFp32) {
    AGPT_REQUIRE_CUDA_DEVICE();
    for (const std::string optimizer : {"AdamW", "Muon"}) {
        const fs::path dump = fresh_dir("bf16_" + optimizer);
        JobConfig fp32_job = tiny_job(dump, "fp32", "cuda", 3, "float32"),
                  bf16_job = tiny_job(dump, "bf16", "cuda", 3, "bfloat16");
        fp32_job.optimizer.name = bf16_job.optimizer.name = optimizer;
        train(fp32_job, nullptr);
        train(bf16_job, nullptr);
        const Curve fp32 = read_curve(dump / "fp32"), bf16 = read_curve(dump / "bf16");
        expect_close(bf16.loss, fp32.loss, 1e-2, (optimizer + " loss").c_str());
        expect_close(bf16.val_loss, fp32.val_loss, 1e-2, (optimizer + " val_loss").c_str());
        fs::remove_all(dump);
    }
}

// Every switch (QK-norm, both soft-caps, ReLU²) with activation checkpointing, on both devices:
// fp32 losses, gradient norms and validation loss within 1e-4.
TEST(CudaTraining, SwitchesWithCheckpointingMatchTheCpuTrainer) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const fs::path dump = fresh_dir("switches");
    auto job = [&](const std::string& device) {
        JobConfig cfg = tiny_job(dump, device, device, 3);
        cfg.model.flavor = "tiny_kitchen_sink";
        cfg.model.final_softcap = 2.0;
        cfg.activation_checkpoint.mode = "full";
        return cfg;
    };
    const JobConfig cpu = job("cpu"), gpu = job("cuda");
    check_cuda_training(gpu);  // accepted
    train(cpu, nullptr);
    train(gpu, nullptr);
    const Curve c_cpu = read_curve(dump / "cpu"), c_gpu = read_curve(dump / "cuda");
    expect_close(c_gpu.loss, c_cpu.loss, 1e-4, "loss");
    expect_close(c_gpu.grad_norm, c_cpu.grad_norm, 1e-4, "grad_norm");
    expect_close(c_gpu.val_loss, c_cpu.val_loss, 1e-4, "val_loss");
    EXPECT_LT(c_cpu.loss.back(), c_cpu.loss.front());
    fs::remove_all(dump);
}

// MLA + MoE (moe_tiny, with the sequence-level balance loss) on both devices: fp32 losses,
// gradient norms, balance losses and validation loss within 1e-4 and each step's per-expert
// loads equal; after the steps the expert biases (the aux-loss-free rule on those loads) equal
// the CPU trainer's bit for bit and the other parameters agree within 1e-4.
TEST(CudaTraining, MoeMatchesTheCpuTrainer) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const fs::path dump = fresh_dir("moe");
    auto job = [&](const std::string& device) {
        JobConfig cfg = tiny_job(dump, device, device, 3);
        cfg.model.flavor = "moe_tiny";
        cfg.model.aux_loss_alpha = 0.01;
        return cfg;
    };
    const JobConfig cpu = job("cpu"), gpu = job("cuda");
    check_cuda_training(gpu);  // accepted
    train(cpu, nullptr);
    train(gpu, nullptr);
    const Curve c_cpu = read_curve(dump / "cpu"), c_gpu = read_curve(dump / "cuda");
    expect_close(c_gpu.loss, c_cpu.loss, 1e-4, "loss");
    expect_close(c_gpu.grad_norm, c_cpu.grad_norm, 1e-4, "grad_norm");
    expect_close(c_gpu.val_loss, c_cpu.val_loss, 1e-4, "val_loss");
    auto moe_rows = [](const fs::path& run) {
        std::vector<nlohmann::json> rows;
        std::ifstream in(run / "metrics.jsonl");
        for (std::string line; std::getline(in, line);) {
            const auto row = nlohmann::json::parse(line);
            if (row.contains("moe_tokens_per_expert")) rows.push_back(row);
        }
        return rows;
    };
    const auto r_cpu = moe_rows(dump / "cpu"), r_gpu = moe_rows(dump / "cuda");
    ASSERT_EQ(r_cpu.size(), 3u);
    ASSERT_EQ(r_gpu.size(), r_cpu.size());
    for (std::size_t i = 0; i < r_cpu.size(); i++) {
        EXPECT_EQ(r_gpu[i]["moe_tokens_per_expert"], r_cpu[i]["moe_tokens_per_expert"])
            << "step " << i + 1;
        const double aux = r_cpu[i]["moe_aux_loss"].get<double>();
        EXPECT_GT(aux, 0.0);
        EXPECT_NEAR(r_gpu[i]["moe_aux_loss"].get<double>(), aux, 1e-4 * aux) << "step " << i + 1;
    }

    const std::vector<float> p_cpu = checkpoint_params(cpu, step_dir(cpu, 3)),
                             p_gpu = checkpoint_params(gpu, step_dir(gpu, 3));
    ASSERT_EQ(p_gpu.size(), p_cpu.size());
    const auto model = make_job_model(cpu, 258, 1, 1);
    int biases = 0;
    double max_diff = 0.0;
    for (const ParamView& v : model->param_views()) {
        const auto first = static_cast<long>(v.offset),
                   last = static_cast<long>(v.offset + v.numel());
        if (v.role == "expert_bias") {
            biases++;
            EXPECT_EQ(std::vector<float>(p_gpu.begin() + first, p_gpu.begin() + last),
                      std::vector<float>(p_cpu.begin() + first, p_cpu.begin() + last))
                << v.name;
            EXPECT_NE(p_cpu[v.offset], 0.0f) << v.name << ": the balancing rule moved nothing";
            continue;
        }
        for (long i = first; i < last; i++)
            max_diff = std::max(max_diff, static_cast<double>(std::abs(p_gpu[i] - p_cpu[i])));
    }
    EXPECT_EQ(biases, 2);
    EXPECT_LT(max_diff, 1e-4);
    fs::remove_all(dump);
}

// Two trainer steps by hand (the trainer's calls), so the state is not the initial one.
void take_steps(LanguageModel& model, Optimizer& opt, int steps) {
    std::vector<int32_t> tokens(2 * 16), targets(tokens.size());
    for (int s = 0; s < steps; s++) {
        for (std::size_t i = 0; i < tokens.size(); i++) {
            tokens[i] = static_cast<int32_t>((i * 37 + s * 11) % 258);
            targets[i] = static_cast<int32_t>((i * 53 + s * 7 + 1) % 258);
        }
        model.zero_grad();
        model.forward_backward(tokens.data(), targets.data(), 2, 16, 1.0 / tokens.size());
        clip_model_gradients(model, 1.0);
        opt.step(1.0);
        model.after_optimizer_step();  // MoE: the expert-bias step
    }
}

// Every state tensor of `b` has `a`'s name, shape and bytes.
void expect_same_state(Optimizer& a, Optimizer& b) {
    const auto ta = a.state_tensors(), tb = b.state_tensors();
    ASSERT_EQ(ta.size(), tb.size());
    for (std::size_t i = 0; i < ta.size(); i++) {
        EXPECT_EQ(ta[i].name, tb[i].name);
        EXPECT_EQ(ta[i].shape, tb[i].shape) << ta[i].name;
        ASSERT_EQ(ta[i].nbytes(), tb[i].nbytes()) << ta[i].name;
        EXPECT_EQ(std::memcmp(ta[i].data, tb[i].data, ta[i].nbytes()), 0) << ta[i].name;
    }
}

void check_checkpoints_move_between_devices(const std::string& flavor) {
    const fs::path dump = fresh_dir("checkpoint");
    JobConfig cfg = tiny_job(dump, "unused", "cuda", 3);
    cfg.model.flavor = flavor;
    const CheckpointStore store((dump / "ckpt").string());

    // cuda -> cpu.
    auto gpu = make_cuda_model(cfg, 258, 2, 16);
    gpu->init_weights("agpt", 7);
    auto gpu_opt = make_cuda_optimizer(cfg, *gpu);
    take_steps(*gpu, *gpu_opt, 2);
    store.save({2, 0, 0, 1}, *gpu, gpu_opt.get(), job_config_to_toml(cfg));
    auto cpu = make_job_model(cfg, 258, 2, 16);
    auto cpu_opt = make_model_optimizer(cfg, *cpu);
    const TrainState st = store.load(2, *cpu, cpu_opt.get());
    EXPECT_EQ(st.step, 2);
    EXPECT_EQ(cpu_opt->steps_taken(), 2);
    ASSERT_EQ(cpu->params().size(), gpu->params().size());
    EXPECT_EQ(std::memcmp(cpu->params().data(), gpu->params().data(),
                          cpu->params().size() * sizeof(float)),
              0);
    expect_same_state(*gpu_opt, *cpu_opt);

    // cpu -> cuda, after one more CPU step so that the state differs from what the device holds.
    take_steps(*cpu, *cpu_opt, 1);
    store.save({3, 0, 0, 1}, *cpu, cpu_opt.get(), job_config_to_toml(cfg));
    auto gpu2 = make_cuda_model(cfg, 258, 2, 16);
    gpu2->init_weights("agpt", 99);
    auto gpu2_opt = make_cuda_optimizer(cfg, *gpu2);
    store.load(3, *gpu2, gpu2_opt.get());
    EXPECT_EQ(std::memcmp(cpu->params().data(), gpu2->params().data(),
                          cpu->params().size() * sizeof(float)),
              0);
    expect_same_state(*cpu_opt, *gpu2_opt);
    // The loaded state reached the device: one more step on each stays within fp32 rounding.
    take_steps(*cpu, *cpu_opt, 1);
    take_steps(*gpu2, *gpu2_opt, 1);
    EXPECT_EQ(gpu2_opt->steps_taken(), 4);
    EXPECT_LT(max_abs_diff(gpu2->params(), cpu->params()), 1e-4);
    fs::remove_all(dump);
}

TEST(CudaTraining, CheckpointsMoveBetweenDevicesBitForBit) {
    AGPT_REQUIRE_CUDA_DEVICE();
    check_checkpoints_move_between_devices("tiny");
}

// MLA + MoE: the expert biases travel as parameters (no optimizer state on either device).
TEST(CudaTraining, MoeCheckpointsMoveBetweenDevicesBitForBit) {
    AGPT_REQUIRE_CUDA_DEVICE();
    check_checkpoints_move_between_devices("moe_tiny");
}

TEST(CudaTraining, RunsResumeOnTheOtherDevice) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const fs::path dump = fresh_dir("resume");
    // A constant learning rate after warm-up, so that the schedule of a 3-step run is the first
    // three steps of the 5-step run's.
    auto job = [&](const std::string& name, const std::string& device, int steps) {
        JobConfig cfg = tiny_job(dump, name, device, steps);
        cfg.lr_scheduler.decay_ratio = 0.0;
        return cfg;
    };
    train(job("cpu", "cpu", 5), nullptr);
    const Curve whole = read_curve(dump / "cpu");
    // Three steps on one device, then the same job with steps = 5 on the other.
    for (const auto& [first, second] : {std::pair{"cuda", "cpu"}, std::pair{"cpu", "cuda"}}) {
        const std::string name = std::string(first) + "_then_" + second;
        train(job(name, first, 3), nullptr);
        train(job(name, second, 5), nullptr);
        expect_close(read_curve(dump / name).loss, whole.loss, 1e-4, name.c_str());
    }
    fs::remove_all(dump);
}

// make_cuda_model builds GPT-2 on the device for model.name = gpt2: the CPU twin's layout and
// initialisation, and its loss and gradients (fp32) on the tokenizer-sized vocabulary.
TEST(CudaTraining, MakesTheGpt2ModelOnCuda) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const fs::path dump = fs::temp_directory_path();
    const JobConfig cfg = load_job_config("", {{"job.dump_folder", dump.string()},
                                               {"model.name", "gpt2"},
                                               {"model.flavor", "gpt2_tiny"},
                                               {"model.init", "gpt2"},
                                               {"training.device", "cuda"},
                                               {"training.mixed_precision_param", "float32"}});
    const int B = 2, T = 16, V = 258;
    auto gpu = make_cuda_model(cfg, V, B, T);
    auto cpu = make_job_model(cfg, V, B, T);
    ASSERT_EQ(gpu->param_views().size(), cpu->param_views().size());
    EXPECT_EQ(gpu->max_context(), cpu->max_context());
    gpu->init_weights("gpt2", 5);
    cpu->init_weights("gpt2", 5);
    std::vector<int32_t> tokens(B * T), targets(B * T);
    for (int i = 0; i < B * T; i++) {
        tokens[i] = (i * 37 + 11) % V;
        targets[i] = (i * 53 + 7) % V;
    }
    gpu->zero_grad();
    cpu->zero_grad();
    const double scale = 1.0 / (B * T);
    const double got = gpu->forward_backward(tokens.data(), targets.data(), B, T, scale);
    const double ref = cpu->forward_backward(tokens.data(), targets.data(), B, T, scale);
    EXPECT_NEAR(got, ref, 1e-4 * std::abs(ref));
    EXPECT_LE(rel_err(gpu->grads(), cpu->grads()), kTolFp32Long);
}

// GPT-2 trains on cuda end to end: 3 steps of gpt2_tiny (two micro-batches, validation, a
// checkpoint) in fp32 match the CPU trainer's losses, gradient norms, validation loss and
// checkpointed parameters within 1e-4.
TEST(CudaTraining, Gpt2Fp32MatchesTheCpuTrainer) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const fs::path dump = fresh_dir("gpt2");
    auto job = [&](const std::string& name, const std::string& device) {
        JobConfig cfg = tiny_job(dump, name, device, 3);
        cfg.model.name = "gpt2";
        cfg.model.flavor = "gpt2_tiny";
        cfg.model.init = "gpt2";
        return cfg;
    };
    const JobConfig cpu = job("cpu", "cpu"), gpu = job("gpu", "cuda");
    train(cpu, nullptr);
    train(gpu, nullptr);
    const Curve c_cpu = read_curve(dump / "cpu"), c_gpu = read_curve(dump / "gpu");
    expect_close(c_gpu.loss, c_cpu.loss, 1e-4, "loss");
    expect_close(c_gpu.grad_norm, c_cpu.grad_norm, 1e-4, "grad_norm");
    expect_close(c_gpu.val_loss, c_cpu.val_loss, 1e-4, "val_loss");
    EXPECT_LT(c_cpu.loss.back(), c_cpu.loss.front());
    const std::vector<float> p_cpu = checkpoint_params(cpu, step_dir(cpu, 3)),
                             p_gpu = checkpoint_params(gpu, step_dir(gpu, 3));
    ASSERT_EQ(p_gpu.size(), p_cpu.size());
    EXPECT_LT(max_abs_diff(p_gpu, p_cpu), 1e-4);
    fs::remove_all(dump);
}

// `agpt bench --training.device cuda`: the same timed steps on the device; in fp32 the last
// step's loss is the CPU bench's (synthetic tokens, same seed), so the device really trained.
TEST(CudaTraining, BenchRunsTheStepsOnTheDevice) {
    AGPT_REQUIRE_CUDA_DEVICE();
    auto bench_job = [](const std::string& device) {
        return load_job_config("", {{"model.flavor", "tiny"},
                                    {"training.device", device},
                                    {"training.mixed_precision_param", "float32"},
                                    {"training.local_batch_size", "2"},
                                    {"training.seq_len", "16"},
                                    {"training.threads", "1"},
                                    {"optimizer.lr", "3e-3"}});
    };
    BenchOptions opt;
    opt.steps = 2;
    opt.warmup = 1;
    const BenchResult cpu = run_bench(bench_job("cpu"), opt);
    // A comparison switch set is part of the result (fp32 runs the plain attention: no effect).
    const ScopedEnv split("AGPT_ATTN_BACKWARD", "split");
    const BenchResult gpu = run_bench(bench_job("cuda"), opt);
    EXPECT_EQ(gpu.device, "cuda");
    EXPECT_EQ(gpu.params, cpu.params);
    EXPECT_NEAR(gpu.loss, cpu.loss, 1e-4 * cpu.loss);
    // Two AdamW steps before it moved the loss away from the untrained ln(32000) (tiny's
    // vocabulary).
    EXPECT_GT(std::abs(cpu.loss - std::log(32000.0)), 1e-3);
    EXPECT_GT(gpu.tok_per_s, 0.0);
    EXPECT_TRUE(gpu.to_json().contains("gpu_mem_gib"));
    EXPECT_FALSE(cpu.to_json().contains("gpu_mem_gib"));
    EXPECT_EQ(gpu.to_json()["kernel_switches"],
              nlohmann::json::array({"AGPT_ATTN_BACKWARD=split"}));
    EXPECT_FALSE(cpu.to_json().contains("kernel_switches"));
}

// `agpt lr-find --training.device cuda`: the sweep's steps on the device; in fp32 each point's
// loss is the CPU sweep's.
TEST(CudaTraining, LrFindSweepsOnTheDevice) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const fs::path dump = fresh_dir("lr_find");
    auto sweep = [&](const std::string& device) {
        const ConfigOverrides o = {{"job.dump_folder", dump.string()},
                                   {"job.name", device},
                                   {"model.flavor", "tiny"},
                                   {"training.device", device},
                                   {"training.mixed_precision_param", "float32"},
                                   {"training.local_batch_size", "2"},
                                   {"training.seq_len", "16"},
                                   {"training.threads", "1"}};
        LrFindOptions opt;
        opt.sweep.lr_min = 1e-4;
        opt.sweep.lr_max = 1e-1;
        opt.sweep.steps = 4;
        return lr_find(lr_find_job_configs("", o), opt, nullptr);
    };
    const LrFindSummary cpu = sweep("cpu"), gpu = sweep("cuda");
    ASSERT_EQ(gpu.results.size(), 1u);
    const auto &p_cpu = cpu.results[0].sweep.points, &p_gpu = gpu.results[0].sweep.points;
    ASSERT_EQ(p_gpu.size(), 4u);
    ASSERT_EQ(p_gpu.size(), p_cpu.size());
    for (std::size_t i = 0; i < p_cpu.size(); i++) {
        EXPECT_NEAR(p_gpu[i].loss, p_cpu[i].loss, 1e-4 * p_cpu[i].loss) << i;
        EXPECT_EQ(p_gpu[i].lr, p_cpu[i].lr) << i;
    }
    EXPECT_NE(p_cpu.back().loss, p_cpu.front().loss);
    fs::remove_all(dump);
}

// The MoE table flavors' MLA heads (192) are within what the GPU attention takes.
TEST(CudaTraining, AcceptsTheMoeTableFlavors) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const ConfigOverrides o = {{"job.dump_folder", fs::temp_directory_path().string()},
                               {"training.device", "cuda"},
                               {"model.flavor", "moe_debugmodel"}};
    EXPECT_NO_THROW(check_cuda_training(load_job_config("", o)));
}

TEST(CudaTraining, RefusesWhatIsNotOnCudaYetNamingTheKey) {
    // Configuration checks come before the device's: these run without a GPU too.
    const fs::path dump = fs::temp_directory_path();
    auto refused = [&](std::vector<std::pair<std::string, std::string>> extra,
                       const std::string& message) {
        ConfigOverrides o = {{"job.dump_folder", dump.string()}, {"training.device", "cuda"}};
        for (auto& kv : extra) o.push_back(kv);
        const JobConfig cfg = load_job_config("", o);
        try {
            check_cuda_training(cfg);
            ADD_FAILURE() << message << ": accepted";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
        }
    };
    refused({{"optimizer.name", "Muon"}, {"optimizer.ns_precision", "fp64"}},
            "optimizer.ns_precision = fp64: not on cuda");
}

}  // namespace
}  // namespace agpt::cuda::test
