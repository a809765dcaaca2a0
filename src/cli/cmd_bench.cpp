#include <cstdio>
#include <filesystem>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "tools/bench.h"
#include "tools/bench_sweep.h"
#include "tools/subprocess.h"

namespace agpt::cli {

void add_bench_command(CLI::App& app, Action& action) {
    struct Options {
        std::string config_path;
        BenchOptions bench;
        std::string sweep;
        std::string out;
    };
    auto opt = std::make_shared<Options>();
    auto* sub = app.add_subcommand("bench", "Time training steps on synthetic tokens; prints JSON");
    sub->add_option("--config", opt->config_path, "TOML job config (default: the built-in job)");
    sub->add_option("--steps", opt->bench.steps, "Timed steps (the median is reported)");
    sub->add_option("--warmup", opt->bench.warmup, "Untimed warm-up steps");
    sub->add_option("--sweep", opt->sweep,
                    "Sweep file (configs/bench/*.toml): time every cell of its grid, each in a "
                    "fresh process, into a leaderboard");
    sub->add_option("--out", opt->out,
                    "With --sweep: folder for leaderboard.md and leaderboard.json "
                    "(default runs/bench/NAME)");
    sub->allow_extras();
    sub->footer(
        "Shape and model via overrides: --model.flavor debugmodel "
        "--training.local_batch_size 8 --training.seq_len 256");
    sub->callback([sub, opt, &action] {
        action = [sub, opt] {
            if (opt->sweep.empty()) {
                if (!opt->out.empty()) fail("--out: only with --sweep");
                const JobConfig cfg = load_job_config(opt->config_path, overrides_from(sub));
                std::puts(run_bench(cfg, opt->bench).to_json().dump().c_str());
                return 0;
            }
            if (!opt->config_path.empty())
                fail("--config: not with --sweep (the sweep file's [base] takes overrides)");
            namespace fs = std::filesystem;
            const Sweep sweep = load_sweep(opt->sweep, overrides_from(sub));
            const fs::path out =
                opt->out.empty() ? fs::path("runs") / "bench" / sweep.name : fs::path(opt->out);
            fs::create_directories(out);  // a bad --out fails before the sweep, not after
            const auto cells = run_sweep(sweep, self_executable(), stdout);
            write_sweep_leaderboard(sweep, cells, out.string());
            const std::string md = sweep_markdown(sweep, cells);
            std::printf("\n%s\nleaderboard: %s/leaderboard.md, %s/leaderboard.json\n", md.c_str(),
                        out.c_str(), out.c_str());
            return 0;
        };
    });
}

}  // namespace agpt::cli
