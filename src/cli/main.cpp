// agpt: the command-line front end. Subcommands are in cmd_*.cpp; each parses its flags and
// calls one library function.
#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "dist/communicator.h"

namespace agpt::cli {

ConfigOverrides overrides_from(const CLI::App* sub) {
    return parse_override_args(sub->remaining());
}

}  // namespace agpt::cli

int main(int argc, char** argv) {
    using namespace agpt::cli;
    CLI::App app{"agpt: pre-train and study language models"};
    app.require_subcommand(1);
    Action action;
    add_train_command(app, action);
    add_bench_command(app, action);
    add_data_command(app, action);
    add_tokenizer_command(app, action);
    add_merge_command(app, action);
    add_plot_command(app, action);
    add_export_command(app, action);
    add_import_command(app, action);
    add_generate_command(app, action);
    add_doctor_command(app, action);
    add_models_command(app, action);
    add_optimizers_command(app, action);
    add_plan_command(app, action);
    add_dashboard_command(app, action);
    add_compete_command(app, action);
    add_lr_find_command(app, action);
    add_rl_command(app, action);
    add_sft_command(app, action);
    add_launch_command(app, action);
    add_submit_command(app, action);
    add_scale_command(app, action);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        return action ? action() : 0;
    } catch (const agpt::Error& e) {
        agpt::report_fatal_error(e.what());
        return 1;
    }
}
