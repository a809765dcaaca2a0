#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "tools/plan.h"

namespace agpt::cli {

void add_plan_command(CLI::App& app, Action& action) {
    struct Options {
        std::string config_path;
        double device_memory_gib = 0;
        int vocab_size = 0;
        bool json = false;
    };
    auto opt = std::make_shared<Options>();
    auto* sub = app.add_subcommand(
        "plan", "Parameters, FLOPs per token and the memory a training job needs, before it runs");
    sub->add_option("--config", opt->config_path, "TOML job config (default: the built-in job)");
    sub->add_option("--device-memory-gib", opt->device_memory_gib,
                    "Memory of the device in GiB: also say whether the job fits");
    sub->add_option("--vocab-size", opt->vocab_size,
                    "Vocabulary in place of model.tokenizer's (a tokenizer not at hand: GPT-2's "
                    "50257)")
        ->check(CLI::PositiveNumber);
    sub->add_flag("--json", opt->json, "Print a JSON object (exact byte counts)");
    sub->allow_extras();
    sub->footer(
        "Job via overrides: --model.flavor 8B --training.local_batch_size 1 "
        "--training.seq_len 8192 --optimizer.name Muon; --training.device cuda plans one GPU "
        "(--training.mixed_precision_param bfloat16 | float32)");
    sub->callback([sub, opt, &action] {
        action = [sub, opt] {
            const JobConfig cfg = load_job_config(opt->config_path, overrides_from(sub));
            const MemoryPlan plan = plan_memory(cfg, opt->device_memory_gib, opt->vocab_size);
            std::fputs(
                opt->json ? (plan_json(plan).dump(2) + "\n").c_str() : format_plan(plan).c_str(),
                stdout);
            return 0;
        };
    });
}

}  // namespace agpt::cli
