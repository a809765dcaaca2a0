#pragma once
// `agpt rl`: GRPO fine-tuning (rl/grpo_math.h) of a run's model on a task.
//
// Each step: prompts_per_step prompts (seeds from the run seed and the step), group_size
// completions each sampled with the key/value cache at rl.temperature, rewards and
// group-normalised advantages; then the log-probabilities of every completion token under the
// sampling policy (π_old, the weights before the step) and the frozen initial model (π_ref),
// and epochs_per_batch optimizer steps on the clipped objective with the KL penalty, in
// micro-batches of training.local_batch_size completions. The optimizer, schedule (over
// steps × epochs_per_batch optimizer steps), clipping and checkpoints are `agpt train`'s. The
// objective uses the model's own distribution (temperature 1); rl.temperature only shapes
// sampling.
//
// Exact resume: everything random is a function of (seed, step), so a run resumed from a
// checkpoint writes the same weights as one that was never interrupted.
#include <cstdio>
#include <string>

#include "train/config.h"

namespace agpt {

struct GrpoSummary {
    std::string run_dir;
    int steps = 0;
    double accuracy_before = -1, accuracy_after = -1;  // held-out, greedy (-1: rl.eval_n = 0)
    double seconds = 0;
    bool preempted = false;
};

// Runs (or resumes) the GRPO job: task.name, rl.init (a run folder, whose newest checkpoint is the
// initial policy and the KL reference, or a Hugging Face Llama folder), [rl], [training],
// [optimizer], [lr_scheduler].
// The model keys of the run are the init run's.
GrpoSummary run_grpo(const JobConfig& cfg, std::FILE* progress = stdout);

}  // namespace agpt
