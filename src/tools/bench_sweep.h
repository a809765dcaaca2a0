#pragma once
// `agpt bench --sweep`: a grid of benchmark cells (every combination of the listed values of any
// config keys: flavor, batch, seq_len, optimizer, ...) plus extra cells, each timed by `agpt bench`
// in a fresh process, into a leaderboard sorted by tokens per second. A cell that cannot run is
// reported, not fatal: an invalid config, a memory plan (`agpt plan`) over the limit, or a child
// that crashes, is killed or exits non-zero (with its last error line).
//
// The sweep file (TOML):
//   description = "..."           # optional
//   steps = 5                     # timed steps per cell (median reported); default 5
//   warmup = 1                    # untimed steps first; default 1
//   max_memory_gib = 8            # optional; default: MemAvailable when the cell starts (cuda
//                                 # cells: the GPU's memory less its context)
//   [base]                        # config overrides of every cell
//   "training.threads" = 0
//   [grid]                        # key = [values]: the product, first key slowest
//   "model.flavor" = ["tiny", "small"]
//   "training.local_batch_size" = [4, 8]
//   [[cell]]                      # cells beyond the grid, each its own overrides
//   "model.flavor" = "80B"
//
// Intended use:
//   const Sweep s = load_sweep("configs/bench/cpu_small.toml", {});
//   auto cells = run_sweep(s, self_executable(), stdout);
//   std::puts(sweep_markdown(s, cells).c_str());
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/config.h"

namespace agpt {

struct Sweep {
    std::string name;  // the file's stem
    std::string path;
    std::string description;
    int steps = 5, warmup = 1;
    double max_memory_gib = 0;  // 0: the machine's available memory (cuda: the GPU's)
    ConfigOverrides base;
    std::vector<std::string> axes;       // the grid's keys, in file order
    std::vector<ConfigOverrides> cells;  // each cell's own overrides (grid, then [[cell]]s)
};

// Reads the file; `extra` (command-line overrides) is appended to [base]. Checks the file's
// shape, not the cells' configs: an invalid cell is a result of the sweep.
Sweep load_sweep(const std::string& path, const ConfigOverrides& extra);

enum class CellStatus { Ok, InvalidConfig, OutOfMemory, Failed };
const char* cell_status_name(CellStatus s);  // "ok", "invalid config", "out of memory", "failed"

struct SweepCell {
    ConfigOverrides overrides;  // the cell's own
    CellStatus status = CellStatus::Ok;
    std::string error;      // why it did not run or failed
    double plan_gib = 0;    // `agpt plan`'s total (0 when the config is invalid)
    nlohmann::json result;  // `agpt bench`'s JSON when Ok
    double seconds = 0;     // wall time of the child
};

// Checks and runs each cell in order; progress lines go to `progress`.
std::vector<SweepCell> run_sweep(const Sweep& s, const std::string& agpt_exe, std::FILE* progress);

// The leaderboard: ok cells by tok/s (descending), then the others in sweep order with their
// reason. The JSON holds every cell with its config, status, error and bench result.
std::string sweep_markdown(const Sweep& s, const std::vector<SweepCell>& cells);
nlohmann::json sweep_json(const Sweep& s, const std::vector<SweepCell>& cells);

// Writes <dir>/leaderboard.md and <dir>/leaderboard.json (creating dir).
void write_sweep_leaderboard(const Sweep& s, const std::vector<SweepCell>& cells,
                             const std::string& dir);

// The machine's MemAvailable (/proc/meminfo) in GiB.
double available_memory_gib();

// What a cell's memory plan must fit: max_memory_gib when set; for a cuda cell the GPU's memory
// (device_gib, 0 when none is visible: no limit, the child then reports the missing device) less
// the ~0.5 GiB of its CUDA context, which the plan does not count; else host_available_gib.
struct MemoryLimit {
    double gib = 0;    // 0: none
    std::string what;  // "max_memory_gib is", "the GPU holds", "available"
};
MemoryLimit cell_memory_limit(double max_memory_gib, bool cuda, double host_available_gib,
                              double device_gib);

}  // namespace agpt
