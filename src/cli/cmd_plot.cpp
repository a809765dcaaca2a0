#include <string>
#include <vector>

#include "cli/commands.h"
#include "tools/plot.h"

namespace agpt::cli {

void add_plot_command(CLI::App& app, Action& action) {
    struct Options {
        PlotOptions plot;
        std::vector<std::string> runs;
    };
    auto opt = std::make_shared<Options>();
    auto* sub = app.add_subcommand("plot", "Draw a metric of one or many runs (PNG or SVG)");
    sub->add_option("runs", opt->runs, "Run folders (each with metrics.jsonl)")->required();
    sub->add_option("--metric", opt->plot.metric, "Metric to draw (loss, val_loss, lr, ...)");
    sub->add_option("--out", opt->plot.out, "Output file, .png or .svg");
    sub->add_option("--smooth", opt->plot.smooth, "EMA smoothing weight in [0, 1)");
    sub->add_flag("--log-x", opt->plot.log_x, "Logarithmic step axis");
    sub->add_flag("--log-y", opt->plot.log_y, "Logarithmic value axis");
    sub->add_option("--title", opt->plot.title, "Title (default: the metric)");
    sub->callback([opt, &action] {
        action = [opt] {
            plot_runs(opt->runs, opt->plot);
            return 0;
        };
    });
}

}  // namespace agpt::cli
