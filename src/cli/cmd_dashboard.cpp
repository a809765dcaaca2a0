#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "tools/dashboard.h"

namespace agpt::cli {

void add_dashboard_command(CLI::App& app, Action& action) {
    auto opt = std::make_shared<DashboardOptions>();
    auto* sub = app.add_subcommand(
        "dashboard", "Serve a live, read-only web page of the runs in a folder (curves, configs)");
    sub->add_option("runs_dir", opt->runs_dir, "Folder holding run folders (e.g. outputs)")
        ->required();
    sub->add_option("--port", opt->port, "TCP port (0: any free one)")->capture_default_str();
    sub->add_option("--host", opt->host, "Address to listen on")->capture_default_str();
    sub->callback([opt, &action] {
        action = [opt] {
            DashboardServer server(*opt);
            std::printf("agpt dashboard: serving %s on %s (Ctrl-C to stop)\n",
                        opt->runs_dir.c_str(), server.url().c_str());
            const bool loopback =
                opt->host.starts_with("127.") || opt->host == "localhost" || opt->host == "::1";
            if (!loopback)
                std::fprintf(stderr,
                             "agpt dashboard: warning: listening on %s; anyone who can reach it "
                             "can read these runs' configs and metrics\n",
                             opt->host.c_str());
            std::fflush(stdout);
            server.listen();
            return 0;
        };
    });
}

}  // namespace agpt::cli
