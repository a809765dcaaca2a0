#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "train/trainer.h"

namespace agpt::cli {

void add_train_command(CLI::App& app, Action& action) {
    struct Options {
        std::string config_path;
        bool print_config = false;
        bool dry_run = false;
    };
    auto opt = std::make_shared<Options>();
    auto* sub = app.add_subcommand("train", "Train a model from a TOML job config and overrides");
    sub->add_option("--config", opt->config_path, "TOML job config (default: the built-in job)");
    sub->add_flag("--print-config", opt->print_config, "Print the resolved config and exit");
    sub->add_flag("--dry-run", opt->dry_run,
                  "Validate, print the model size and which optimizer takes each parameter, and "
                  "exit");
    sub->allow_extras();
    sub->footer("Any config key can be overridden: --section.key value (e.g. --training.steps 50)");
    sub->callback([sub, opt, &action] {
        action = [sub, opt] {
            const JobConfig cfg = load_job_config(opt->config_path, overrides_from(sub));
            if (opt->print_config) {
                std::fputs(job_config_to_toml(cfg).c_str(), stdout);
                return 0;
            }
            if (opt->dry_run) {
                std::fputs(describe_dry_run(cfg).c_str(), stdout);
                return 0;
            }
            return train(cfg).preempted ? kExitPreempted : 0;
        };
    });
}

}  // namespace agpt::cli
