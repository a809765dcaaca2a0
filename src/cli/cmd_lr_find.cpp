#include <string>

#include "cli/commands.h"
#include "tools/lr_find.h"

namespace agpt::cli {

void add_lr_find_command(CLI::App& app, Action& action) {
    struct Options {
        std::string config_path;
        LrFindOptions find;
    };
    auto opt = std::make_shared<Options>();
    auto* sub = app.add_subcommand(
        "lr-find", "Learning-rate range test: an exponential lr sweep with suggestions and a plot");
    sub->add_option("--config", opt->config_path, "TOML job config (default: the built-in job)");
    sub->add_option("--lr-min", opt->find.sweep.lr_min, "First learning rate of the sweep")
        ->capture_default_str();
    sub->add_option("--lr-max", opt->find.sweep.lr_max, "Last learning rate of the sweep")
        ->capture_default_str();
    sub->add_option("--steps", opt->find.sweep.steps, "Steps of the full sweep")
        ->capture_default_str();
    sub->add_option("--beta", opt->find.sweep.beta, "EMA weight of the smoothed loss")
        ->capture_default_str();
    sub->add_option("--divergence-factor", opt->find.sweep.divergence_factor,
                    "Stop when the smoothed loss exceeds this many times its best")
        ->capture_default_str();
    sub->add_option("--save-every", opt->find.save_every, "Steps between resume points (0: none)")
        ->capture_default_str();
    sub->allow_extras();
    sub->footer(
        "Any config key can be overridden: --section.key value. Several optimizers: "
        "--optimizer.name AdamW,Muon (or the flag repeated). Writes lr_find_<optimizer>.csv/.json "
        "and lr_find.png into <job.dump_folder>/<job.name>/; re-run the same command to continue "
        "an interrupted sweep.");
    sub->callback([sub, opt, &action] {
        action = [sub, opt] {
            const auto cfgs = lr_find_job_configs(opt->config_path, overrides_from(sub));
            return lr_find(cfgs, opt->find).complete ? 0 : 1;
        };
    });
}

}  // namespace agpt::cli
