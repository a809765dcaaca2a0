#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "tools/models.h"

namespace agpt::cli {

void add_models_command(CLI::App& app, Action& action) {
    auto json = std::make_shared<bool>(false);
    auto* sub = app.add_subcommand(
        "models", "List the model flavors with their parameter counts (total and active)");
    sub->add_flag("--json", *json,
                  "Print a JSON list of {name, flavor, params, active_params} objects");
    sub->callback([json, &action] {
        action = [json] {
            const auto rows = list_models();
            std::fputs((*json ? models_json(rows) : models_table(rows)).c_str(), stdout);
            return 0;
        };
    });
}

}  // namespace agpt::cli
