#pragma once
// `agpt lr-find`: the learning-rate range test (L. Smith, arXiv 1506.01186; fastai's lr_find).
// The learning rate grows exponentially from lr_min to lr_max, one optimizer step per value, with
// the job's LR schedule suspended. The loss is smoothed by a bias-corrected EMA (β = 0.98) and
// the sweep stops once the smoothed loss exceeds 4× the best smoothed loss seen (or the loss is
// not finite). Suggestions are read off the smoothed curve against log10(lr):
//   steepest    the lr where d(smoothed)/d(log10 lr) is most negative;
//   min / 10    a tenth of the lr at the smoothed minimum;
//   blow-up     every lr where that derivative turns from negative to non-negative; the last
//               one (the turn into divergence) divided by 10 is the blow-up suggestion, when it
//               comes after the steepest descent (earlier turns are wiggles of the flat start).
//
// Intended usage:
//   LrSweepOptions opt;                          // lr_min, lr_max, steps, beta, divergence
//   LrSweep sweep;                               // empty: start; a saved one: continue
//   run_lr_sweep(opt, sweep, [&](int step, double lr) {
//       return LrStepResult{train_one_step_at(lr), lr};   // loss before the update
//   });
//   const LrSuggestions s = suggest_lrs(sweep.points);
// On a model: lr_find(job configs, options) does the above per optimizer and writes the files.
#include <cstdio>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "train/config.h"

namespace agpt {

struct LrSweepOptions {
    double lr_min = 1e-6;
    double lr_max = 1.0;
    int steps = 100;  // points of the full sweep, lr_min and lr_max included
    double beta = 0.98;
    double divergence_factor = 4.0;  // stop when smoothed > factor × best smoothed
};

// Throws Error naming the flag (--lr-min, --lr-max, --steps, ...) and the problem.
void validate_lr_sweep_options(const LrSweepOptions& opt);

// The learning rate of 0-based step `step`: lr_min · (lr_max / lr_min)^(step / (steps − 1)).
double lr_sweep_lr(const LrSweepOptions& opt, int step);

struct LrSweepPoint {
    int step = 0;                                                  // 0-based
    double lr = 0.0;                                               // the swept value
    double applied_lr = std::numeric_limits<double>::quiet_NaN();  // what the optimizer used
    double loss = 0.0;                                             // of the batch, before update
    double smoothed = 0.0;                                         // bias-corrected EMA
};

enum class LrSweepStop { kRunning, kCompleted, kDiverged, kNotFinite };
const char* lr_sweep_stop_name(LrSweepStop stop);  // running, completed, diverged, not_finite

// The whole state of a sweep: resuming from a copy continues exactly.
struct LrSweep {
    std::vector<LrSweepPoint> points;
    double ema = 0.0;  // before bias correction
    double best = std::numeric_limits<double>::infinity();
    LrSweepStop stop = LrSweepStop::kRunning;
    bool done() const { return stop != LrSweepStop::kRunning; }
};

// What one step of the callee reports.
struct LrStepResult {
    double loss = 0.0;  // the loss of the batch the step trained on, measured before the update
    double applied_lr = std::numeric_limits<double>::quiet_NaN();  // the optimizer's own lr
};

// Adds one measured loss at the next step's lr: updates the EMA, the best value and the stop.
// A non-finite loss stops the sweep without adding a point.
void lr_sweep_record(const LrSweepOptions& opt, LrSweep& sweep, const LrStepResult& result);

using LrStepFn = std::function<LrStepResult(int step, double lr)>;
// Called after each recorded point; returning false pauses the sweep (it can be continued).
using LrAfterStepFn = std::function<bool(const LrSweep&)>;

// Runs the sweep from where `sweep` stands until it stops or after_step pauses it.
void run_lr_sweep(const LrSweepOptions& opt, LrSweep& sweep, const LrStepFn& step_fn,
                  const LrAfterStepFn& after_step = {});

// d(smoothed)/d(log10 lr) at every point: central differences inside, one-sided at the ends
// (numpy.gradient with coordinates). Empty below two points.
std::vector<double> lr_sweep_slope(const std::vector<LrSweepPoint>& points);

struct LrSuggestions {
    std::optional<double> steepest;
    std::optional<double> min_div10;
    std::vector<double> blow_ups;  // every negative-to-non-negative turn of the slope, in order
    std::optional<double> blow_up_div10;  // the last blow-up / 10, if after the steepest
};

// Needs at least three points for anything; fewer give an empty result.
LrSuggestions suggest_lrs(const std::vector<LrSweepPoint>& points);

// ---- on a model ------------------------------------------------------------------------------

struct LrFindOptions {
    LrSweepOptions sweep;
    int save_every = 20;  // steps between resume points; 0: none (a killed sweep restarts)
    // Stops the call after this many steps of the call (as a kill after a save would), leaving
    // the folder resumable; < 0: never. For tests of resume.
    int stop_after_steps = -1;
};

struct LrFindResult {
    std::string optimizer;
    std::string csv, json;  // paths
    LrSweep sweep;
    LrSuggestions suggestions;
    bool reused = false;  // finished by an earlier call, read back rather than run
};

struct LrFindSummary {
    std::string run_dir;
    std::string plot;  // "" while a sweep is unfinished
    std::vector<LrFindResult> results;
    bool complete = false;
};

// Splits the optimizer names out of `--optimizer.name` overrides ("AdamW,Muon" or repeated
// flags) and returns one job config per optimizer, the other overrides applied to each. With
// several optimizers, an `--optimizer.KEY` / `--optimizer.adamw.KEY` override goes only to the
// optimizers that have that key (one that none has is refused, naming it). Without a name
// override: the config's own optimizer.
std::vector<JobConfig> lr_find_job_configs(const std::string& toml_path,
                                           const ConfigOverrides& overrides);

// One sweep per config (they differ only in [optimizer]/[optimizer.adamw]), each from the same
// initial weights and data order, into <job.dump_folder>/<job.name>/: lr_find_<optimizer>.csv,
// .json, and lr_find.png comparing them. The swept lr is the main group's; other groups
// (Muon's AdamW) keep their configured ratio to it. Re-running the same call continues an
// interrupted sweep from its last save and skips finished ones; a folder of anything else, or of
// a different lr-find call, is refused.
LrFindSummary lr_find(const std::vector<JobConfig>& cfgs, const LrFindOptions& opt,
                      std::FILE* progress = stdout);

}  // namespace agpt
