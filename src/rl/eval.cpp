#include "rl/eval.h"

#include "core/error.h"
#include "rl/sft.h"
#include "tools/run_model.h"

namespace agpt {

RlEvalResult evaluate_run_on_task(const RlEvalOptions& o) {
    if (o.n <= 0) fail("rl eval: --n {} must be positive", o.n);
    RunModel rm = load_run_model(o.run_dir, o.step, 1, 1);
    JobConfig job = rm.config;
    if (!o.task.empty()) job.task.name = o.task;
    if (o.difficulty != 0) job.task.difficulty = o.difficulty;
    if (!o.task.empty() && o.task != rm.config.task.name && o.difficulty == 0)
        job.task.difficulty = 0;  // another task: its own default
    if (job.task.name.empty()) fail("{}: the run has no task.name; pass --task NAME", o.run_dir);
    RlEvalResult r;
    const RLTask& task = job_task(job, r.difficulty);
    r.task = task.name();
    r.step = rm.step;
    const int max_new = o.max_new_tokens > 0 ? o.max_new_tokens : job.rl.max_new_tokens;
    r.accuracy =
        evaluate_task_accuracy(*rm.model, rm.tokenizer, task, r.difficulty, o.n, o.seed, max_new);
    return r;
}

}  // namespace agpt
