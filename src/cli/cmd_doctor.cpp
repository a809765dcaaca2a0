#include <cstdio>

#include "cli/commands.h"
#include "tools/doctor.h"

namespace agpt::cli {

void add_doctor_command(CLI::App& app, Action& action) {
    auto* sub = app.add_subcommand("doctor", "Show the compiled-in backends and visible devices");
    sub->callback([&action] {
        action = [] {
            std::fputs(doctor_report().c_str(), stdout);
            return 0;
        };
    });
}

}  // namespace agpt::cli
