#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "tools/hf_export.h"

namespace agpt::cli {

void add_export_command(CLI::App& app, Action& action) {
    struct Options {
        std::string run, format, out;
        int step = -1;
    };
    auto opt = std::make_shared<Options>();
    auto* sub = app.add_subcommand("export", "Export a run's checkpoint (Hugging Face Llama)");
    sub->add_option("--run", opt->run, "Run folder (holding config.toml and checkpoints/)")
        ->required();
    sub->add_option("--step", opt->step, "Checkpoint step (default: the newest)");
    sub->add_option("--format", opt->format, "Output format")
        ->required()
        ->check(CLI::IsMember({"hf"}));
    sub->add_option("--out", opt->out, "Output folder (must not exist)")->required();
    sub->callback([opt, &action] {
        action = [opt] {
            const HfExportResult r =
                export_run_hf(opt->run, opt->step, opt->out, [](const std::string& w) {
                    std::fprintf(stderr, "agpt: warning: %s\n", w.c_str());
                });
            std::printf("exported %s (step %d) to %s\n", r.checkpoint_dir.c_str(), r.step,
                        opt->out.c_str());
            return 0;
        };
    });
}

}  // namespace agpt::cli
