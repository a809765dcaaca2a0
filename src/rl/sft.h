#pragma once
// `agpt sft`: supervised warm-up on generated task examples, so that GRPO starts from a model
// that is partly right. Each step draws local_batch_size fresh examples (seeds from the run seed
// and the step, so a resumed run draws the same ones) and trains on prompt + reference answer
// with the loss on the answer tokens and the end-of-sequence token only.
//
// Intended use:
//   JobConfig cfg = load_job_config("", {{"task.name", "sum_of_digits"}, {"training.steps",
//   "500"}}); SftSummary s = run_sft(cfg);        // <dump_folder>/<job.name>/ with a final
//   checkpoint
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "model/language_model.h"
#include "model/model_args.h"
#include "rl/task.h"
#include "train/config.h"

namespace agpt {

// Held-out accuracy is measured on this seed unless a command is given another: the numbers of
// `agpt sft`, `agpt rl` and `agpt rl eval` are then on the same prompts.
inline constexpr uint64_t kDefaultEvalSeed = 20240601;

struct SftSummary {
    std::string run_dir;
    int steps = 0;
    double final_loss = 0;
    double accuracy = -1;  // held-out greedy accuracy after training (-1: rl.eval_n = 0)
    double seconds = 0;
};

// The task a job names (task.name, task.difficulty resolved against the task's default).
const RLTask& job_task(const JobConfig& cfg, int& difficulty);

// The model sft and rl train, on training.device: the CPU Transformer, or on cuda the device
// model (train/cuda_training.h) whose CPU twin samples; activations for (max_batch, max_seq)
// kept as activation_checkpoint.mode says. Fails naming the key for what cuda does not run.
std::unique_ptr<LanguageModel> make_rl_model(const JobConfig& cfg, const ModelArgs& args,
                                             int max_batch, int max_seq);
// What the run's first log line adds on cuda (training on the device, sampling on the CPU
// twin); empty on cpu.
std::string rl_device_note(const JobConfig& cfg);

SftSummary run_sft(const JobConfig& cfg, std::FILE* progress = stdout);

}  // namespace agpt
