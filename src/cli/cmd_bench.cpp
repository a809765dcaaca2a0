#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "tools/bench.h"

namespace agpt::cli {

void add_bench_command(CLI::App& app, Action& action) {
    struct Options {
        std::string config_path;
        BenchOptions bench;
    };
    auto opt = std::make_shared<Options>();
    auto* sub = app.add_subcommand("bench", "Time training steps on synthetic tokens; prints JSON");
    sub->add_option("--config", opt->config_path, "TOML job config (default: the built-in job)");
    sub->add_option("--steps", opt->bench.steps, "Timed steps (the median is reported)");
    sub->add_option("--warmup", opt->bench.warmup, "Untimed warm-up steps");
    sub->allow_extras();
    sub->footer(
        "Shape and model via overrides: --model.flavor debugmodel "
        "--training.local_batch_size 8 --training.seq_len 256");
    sub->callback([sub, opt, &action] {
        action = [sub, opt] {
            const JobConfig cfg = load_job_config(opt->config_path, overrides_from(sub));
            std::puts(run_bench(cfg, opt->bench).to_json().dump().c_str());
            return 0;
        };
    });
}

}  // namespace agpt::cli
