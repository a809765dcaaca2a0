#pragma once
// `agpt plot`: curves of one metric from one or many runs' metrics.jsonl, as PNG or SVG
// (chosen by the output's extension), drawn with cairo.
#include <string>
#include <vector>

namespace agpt {

struct PlotOptions {
    std::string metric = "loss";
    std::string out = "loss.png";
    double smooth = 0.0;  // EMA weight of the past in [0, 1); 0: raw values
    bool log_x = false;
    bool log_y = false;
    int width = 900, height = 560;
    std::string title;  // default: the metric's name
    std::string x_label = "step";
};

struct Series {
    std::string label;
    std::vector<double> x, y;
};

// The (step, metric) points of a run folder's metrics.jsonl, in file order. Lines that do not
// parse (a run still writing, a kill mid-line) are skipped.
Series read_metric(const std::string& run_dir, const std::string& metric);

// Bias-corrected EMA smoothing (the TensorBoard/W&B convention).
std::vector<double> ema_smooth(const std::vector<double>& y, double weight);

// Reads every run, then draws and writes opt.out. Throws Error when a run has no such metric
// (naming the run and the metrics it has) or the extension is neither .png nor .svg.
void plot_runs(const std::vector<std::string>& run_dirs, const PlotOptions& opt);

// Draws the given series (labelled by opt.metric / opt.title / opt.x_label) to opt.out.
void plot_series(const std::vector<Series>& series, const PlotOptions& opt);

}  // namespace agpt
