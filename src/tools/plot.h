#pragma once
// `agpt plot`: curves of one metric from one or many runs' metrics.jsonl, as PNG or SVG
// (chosen by the output's extension), drawn with cairo.
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
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
};

struct Series {
    std::string label;
    std::vector<double> x, y;
};

// One metrics.jsonl line as a JSON object; nullopt for a line that is not one (a run still
// writing, a kill mid-line, a stray edit).
std::optional<nlohmann::json> parse_metrics_line(std::string_view line);
// Whether parse_metrics_line would give an object, checked without building it (about twice as
// fast, for readers that pass lines on unchanged).
bool is_metrics_line(std::string_view line);

// The (step, metric) points of a run folder's metrics.jsonl, in file order. Lines that do not
// parse (a run still writing, a kill mid-line) are skipped.
Series read_metric(const std::string& run_dir, const std::string& metric);

// Bias-corrected EMA smoothing (the TensorBoard/W&B convention).
std::vector<double> ema_smooth(const std::vector<double>& y, double weight);

// Reads every run, then draws and writes opt.out. Throws Error when a run has no such metric
// (naming the run and the metrics it has) or the extension is neither .png nor .svg.
void plot_runs(const std::vector<std::string>& run_dirs, const PlotOptions& opt);

// Draws series already in hand (labels as given; opt.smooth and opt.metric only name the axis)
// and writes opt.out. Throws Error for an extension other than .png or .svg.
void plot_series(const std::vector<Series>& series, const PlotOptions& opt);

}  // namespace agpt
