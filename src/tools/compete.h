#pragma once
// `agpt compete`: a fixed base job and a list of entries (config overrides such as optimizer, lr,
// qk_norm, softcap, ffn), each trained for several seeds in fresh `agpt train` processes, then a
// leaderboard ranked by final validation loss with Welch's t-test against the leader.
//
// The competition file (TOML):
//   description = "..."               # optional, shown in the report
//   seeds = 3                         # optional (default 1); --seeds overrides it
//   [base]                            # config overrides every entry starts from
//   "model.flavor" = "debugmodel"
//   "training.steps" = 300
//   [[entry]]
//   name = "adamw"                    # letters, digits, '-', '_', '.', '+'
//   "optimizer.name" = "AdamW"        # the entry's own overrides, on top of [base]
//
// Run s of entry E (s = 1..seeds, training.seed = s) goes to <out>/<E>/seed<s>/. A run whose
// metrics.jsonl holds a val_loss at the last step is finished and skipped when the competition
// is run again; an unfinished folder is moved aside to seed<s>.incomplete-N and run again.
//
// Intended use:
//   Competition c = load_competition("configs/competitions/round1.toml");
//   CompeteOptions o{.out = "runs/competitions/round1"};
//   run_competition(c, o, self_executable(), stdout);        // or emit_job_scripts(c, o, "slurm")
//   write_competition_report(c, o, collect_results(c, o), "docs/competitions/round1");
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "train/config.h"

namespace agpt {

struct CompetitionEntry {
    std::string name;
    ConfigOverrides overrides;  // the entry's own, in file order
};

struct Competition {
    std::string name;  // the file's stem
    std::string path;
    std::string description;
    int seeds = 1;
    ConfigOverrides base;
    std::vector<CompetitionEntry> entries;
};

struct CompeteOptions {
    std::string out;  // run folders; default runs/competitions/<name>
    int seeds = 0;    // > 0 replaces the file's `seeds`
    double confidence = 0.95;
};

// Reads and checks the file: every entry's resolved config (base + entry + seed + run folder)
// must load; errors name the file, the entry and the key. Requires validation to be enabled.
Competition load_competition(const std::string& path);

int competition_seeds(const Competition& c, const CompeteOptions& o);
std::string competition_out(const Competition& c, const CompeteOptions& o);

// The `agpt train` overrides of one run (base, then the entry's, then seed and run folder).
ConfigOverrides run_overrides(const Competition& c, const CompetitionEntry& e, int seed,
                              const std::string& out);
// The run folder of one run: <out>/<entry>/seed<seed>.
std::string run_folder(const std::string& out, const std::string& entry, int seed);
// True when the run's metrics.jsonl has a val_loss row at its config's last step.
bool run_finished(const std::string& run_dir, int steps);

struct CompeteProgress {
    int ran = 0, skipped = 0, failed = 0;
    std::vector<std::string> failures;  // "entry seedN: error line"
};

// Runs every entry × seed not yet finished, one after another, each as
// `agpt_exe train --key value ...`; a failing run is reported and the others go on. Progress
// lines go to `progress`.
CompeteProgress run_competition(const Competition& c, const CompeteOptions& o,
                                const std::string& agpt_exe, std::FILE* progress);

// One job script per entry (all its seeds, one after another) for `scheduler` "pbs" or "slurm":
// file name -> text. agpt_exe and workdir are written into the scripts as given.
std::map<std::string, std::string> emit_job_scripts(const Competition& c, const CompeteOptions& o,
                                                    const std::string& scheduler,
                                                    const std::string& agpt_exe,
                                                    const std::string& workdir);

// Writes emit_job_scripts' scripts into the competition's out folder (executable); returns their
// paths.
std::vector<std::string> write_job_scripts(const Competition& c, const CompeteOptions& o,
                                           const std::string& scheduler,
                                           const std::string& agpt_exe, const std::string& workdir);

struct EntryResult {
    std::string name;
    std::vector<int> seeds;              // seeds with a finished run
    std::vector<double> final_val_loss;  // one per finished seed
    double mean = 0, std = 0;
    double tok_per_s = 0;  // mean over logged steps and seeds
    // Against the leader (Welch, two-sided); p is NaN without enough seeds on either side.
    double p_vs_leader = 0;
    bool tied_with_leader = false;               // p >= 1 - confidence (the leader itself: true)
    std::vector<double> curve_step, curve_loss;  // training loss, mean over seeds
    std::vector<double> val_curve_step, val_curve_loss;  // validation loss, mean over seeds
};

// Leaderboard statistics from per-seed final validation losses: sorts by mean (ascending; entries
// without results last), fills mean, std, p_vs_leader and tied_with_leader.
void rank_entries(std::vector<EntryResult>& entries, double confidence);

// Reads every finished run's metrics and ranks the entries.
std::vector<EntryResult> collect_results(const Competition& c, const CompeteOptions& o);

// The leaderboard as Markdown (the table and the statement of the test).
std::string leaderboard_markdown(const std::vector<EntryResult>& ranked, double confidence,
                                 int seeds);

// Writes <report_dir>/README.md (leaderboard, base and entry configs, failures) and
// loss_curves.png / val_loss_curves.png.
void write_competition_report(const Competition& c, const CompeteOptions& o,
                              const std::vector<EntryResult>& ranked,
                              const CompeteProgress& progress, const std::string& report_dir);

}  // namespace agpt
