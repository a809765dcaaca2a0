#pragma once
// `agpt rl eval`: held-out accuracy of a run's model on a task (greedy completions of prompts
// from the held-out seed stream, never drawn in training).
#include <cstdint>
#include <string>

#include "rl/rollout.h"

namespace agpt {

struct RlEvalOptions {
    std::string run_dir;
    std::string task;  // empty: the run's task.name
    int n = 500;
    uint64_t seed = 20240601;  // kDefaultEvalSeed (rl/sft.h)
    int difficulty = 0;        // 0: the run's task.difficulty, else the task's default
    int step = -1;             // checkpoint; -1: the newest
    int max_new_tokens = 0;    // 0: the run's rl.max_new_tokens
};

struct RlEvalResult {
    std::string task;
    int difficulty = 0, step = 0;
    TaskAccuracy accuracy;
};

RlEvalResult evaluate_run_on_task(const RlEvalOptions& options);

}  // namespace agpt
