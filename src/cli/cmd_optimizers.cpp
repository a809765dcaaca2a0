#include <cstdio>

#include "cli/commands.h"
#include "optim/optimizer.h"

namespace agpt::cli {

void add_optimizers_command(CLI::App& app, Action& action) {
    auto* sub = app.add_subcommand(
        "optimizers", "List the optimizers with their [optimizer] keys, defaults and sources");
    sub->callback([&action] {
        action = [] {
            std::fputs(describe_optimizers().c_str(), stdout);
            return 0;
        };
    });
}

}  // namespace agpt::cli
