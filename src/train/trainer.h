#pragma once
// The training loop: data, model, optimizer, schedule, metrics and the run folder.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "dist/communicator.h"
#include "model/language_model.h"
#include "model/tensor_parallel.h"
#include "optim/optimizer.h"
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

// The job's optimizer over the model's parameters, routed by role ([optimizer], optimizer.h).
// The job's model (model.name's family and flavor, the switches) with the tokenizer's
// vocabulary, its activations sized for (max_batch, max_seq); weights not initialised. tp: this
// rank's tensor-parallel shards (agpt family only).
std::unique_ptr<LanguageModel> make_job_model(const JobConfig& cfg, int vocab_size, int max_batch,
                                              int max_seq, const TensorParallel& tp = {});

std::unique_ptr<Optimizer> make_model_optimizer(const JobConfig& cfg, LanguageModel& model);

// SophiaG's Gauss–Newton–Bartlett estimate (optimizer.h's protocol) into model.grads(): the
// gradient of the mean cross-entropy against labels drawn from the model's own softmax on the
// step's `accum` micro-batches (B×T each, back to back in step_inputs), accumulated and clipped
// as a training step's. The draw depends on (seed, step, rank) only, so a resumed run draws the
// same. With `data_ranks`, the estimate is the mean over every rank's micro-batches.
void gauss_newton_bartlett(LanguageModel& model, const int32_t* step_inputs, int B, int T,
                           int accum, double max_norm, uint64_t seed, int step,
                           Communicator* data_ranks = nullptr);

// What `agpt train --dry-run` prints: the model's size and which optimizer takes each parameter.
// Validates the config; creates nothing.
std::string describe_dry_run(const JobConfig& cfg);

// Runs the job, or resumes it from its latest complete checkpoint when the run folder has one
// and checkpoint.enable is set. Progress lines go to `progress` and to <run>/train.log.
TrainSummary train(const JobConfig& cfg, std::FILE* progress = stdout);

}  // namespace agpt
