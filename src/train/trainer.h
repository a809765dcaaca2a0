#pragma once
// The training loop: data, model, optimizer, schedule, metrics and the run folder.
#include <cstdio>
#include <string>

#include "train/config.h"

namespace agpt {

struct TrainSummary {
    std::string run_dir;
    int steps = 0;
    double final_loss = 0.0;      // training loss of the last step
    double final_val_loss = 0.0;  // NaN when validation is disabled
    double tok_per_s = 0.0;       // over the whole run
    std::string sample;           // generated text (empty when sample.max_new_tokens = 0)
    bool preempted = false;       // stopped early by a signal or the walltime deadline
};

// Exit status of `agpt train` when it saved a checkpoint and stopped early (SIGTERM, SIGUSR1 or
// job.walltime_deadline): EX_TEMPFAIL, "try again later".
inline constexpr int kExitPreempted = 75;

// Sets the OpenMP/BLAS thread count (0: all cores) and returns it.
int set_thread_count(int threads);

// Creates <dump_folder>/<job.name>/ and refuses to touch an existing one.
std::string create_run_dir(const JobConfig& cfg);

// Runs the job, or resumes it from its latest complete checkpoint when the run folder has one
// and checkpoint.enable is set. Progress lines go to `progress` and to <run>/train.log.
TrainSummary train(const JobConfig& cfg, std::FILE* progress = stdout);

}  // namespace agpt
