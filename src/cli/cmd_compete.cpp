#include <cstdio>
#include <filesystem>
#include <string>

#include "cli/commands.h"
#include "tools/compete.h"
#include "tools/subprocess.h"

namespace agpt::cli {

void add_compete_command(CLI::App& app, Action& action) {
    struct Options {
        std::string file;
        CompeteOptions compete;
        std::string report;
        std::string emit;
        bool report_only = false;
    };
    auto opt = std::make_shared<Options>();
    auto* sub = app.add_subcommand(
        "compete", "Train every entry of a competition file for several seeds; rank by val_loss");
    sub->add_option("file", opt->file, "Competition TOML ([base] and [[entry]] tables)")
        ->required();
    sub->add_option("--seeds", opt->compete.seeds, "Seeds per entry (default: the file's seeds)")
        ->check(CLI::PositiveNumber);
    sub->add_option("--out", opt->compete.out, "Run folders (default runs/competitions/NAME)");
    sub->add_option("--report", opt->report,
                    "Folder for README.md and the plots (default docs/competitions/NAME)");
    sub->add_option("--confidence", opt->compete.confidence,
                    "Confidence of the tie test against the leader")
        ->default_val(0.95);
    sub->add_option("--emit", opt->emit,
                    "Write one pbs or slurm job script per entry into --out instead of running")
        ->check(CLI::IsMember({"pbs", "slurm"}));
    sub->add_flag("--report-only", opt->report_only,
                  "Write the report from the finished runs without running the others");
    sub->callback([opt, &action] {
        action = [opt] {
            namespace fs = std::filesystem;
            const Competition c = load_competition(opt->file);
            if (!opt->emit.empty()) {
                for (const auto& path :
                     write_job_scripts(c, opt->compete, opt->emit, self_executable(),
                                       fs::current_path().string()))
                    std::printf("%s\n", path.c_str());
                return 0;
            }
            CompeteProgress progress;
            if (!opt->report_only)
                progress = run_competition(c, opt->compete, self_executable(), stdout);
            const std::string report = opt->report.empty()
                                           ? (fs::path("docs") / "competitions" / c.name).string()
                                           : opt->report;
            const auto ranked = collect_results(c, opt->compete);
            write_competition_report(c, opt->compete, ranked, progress, report);
            std::printf("%s", leaderboard_markdown(ranked, opt->compete.confidence,
                                                   competition_seeds(c, opt->compete))
                                  .c_str());
            std::printf("report: %s/README.md\n", report.c_str());
            if (progress.failed > 0) {
                std::fprintf(stderr,
                             "agpt: error: %d of the competition's runs failed (listed in "
                             "the report)\n",
                             progress.failed);
                return 1;
            }
            return 0;
        };
    });
}

}  // namespace agpt::cli
