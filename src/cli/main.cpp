// agpt: the command-line front end. Each subcommand parses its flags and calls one library
// function; everything else lives in the library.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "core/error.h"
#include "tools/bench.h"
#include "train/config.h"
#include "train/trainer.h"

namespace {

// Config overrides (--section.key value) are whatever CLI11 did not recognise.
agpt::ConfigOverrides overrides_from(const CLI::App* sub) {
    return agpt::parse_override_args(sub->remaining());
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"agpt: pre-train and study language models on CPUs (and soon GPUs)"};
    app.require_subcommand(1);

    std::string config_path;
    bool print_config = false;
    auto* train = app.add_subcommand("train", "Train a model from a TOML job config and overrides");
    train->add_option("--config", config_path, "TOML job config (default: the built-in job)");
    train->add_flag("--print-config", print_config, "Print the resolved config and exit");
    train->allow_extras();
    train->footer(
        "Any config key can be overridden: --section.key value (e.g. --training.steps 50)");

    agpt::BenchOptions bench_opt;
    auto* bench =
        app.add_subcommand("bench", "Time training steps on synthetic tokens; prints JSON");
    bench->add_option("--config", config_path, "TOML job config (default: the built-in job)");
    bench->add_option("--steps", bench_opt.steps, "Timed steps (median reported)");
    bench->add_option("--warmup", bench_opt.warmup, "Untimed warm-up steps");
    bench->allow_extras();
    bench->footer(
        "Shape and model via overrides: --model.flavor debugmodel "
        "--training.local_batch_size 8 --training.seq_len 256");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }

    try {
        if (train->parsed()) {
            const agpt::JobConfig cfg = agpt::load_job_config(config_path, overrides_from(train));
            if (print_config) {
                std::fputs(agpt::job_config_to_toml(cfg).c_str(), stdout);
                return 0;
            }
            agpt::train(cfg);
        } else if (bench->parsed()) {
            const agpt::JobConfig cfg = agpt::load_job_config(config_path, overrides_from(bench));
            const agpt::BenchResult r = agpt::run_bench(cfg, bench_opt);
            std::puts(r.to_json().dump().c_str());
        }
    } catch (const agpt::Error& e) {
        std::fprintf(stderr, "agpt: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
