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
    std::string title;    // default: the metric's name
    std::string x_label;  // default: "step"
};

// A labelled point drawn over a curve in the curve's colour (e.g. a suggested learning rate).
struct PlotMarker {
    double x = 0.0, y = 0.0;
    std::string label;
};

struct Series {
    std::string label;
    std::vector<double> x, y;
    std::vector<double> y_light;  // at the same x, drawn thin and light behind y (e.g. raw values)
    std::vector<PlotMarker> markers;  // drawn only where they fall inside the axes
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

// Draws the given curves (no smoothing applied) and writes opt.out, replacing an existing file
// only with a complete one. Throws Error on an extension other than .png or .svg, a non-positive
// value on a log axis, or a failed write.
void plot_series(const std::vector<Series>& series, const PlotOptions& opt);

}  // namespace agpt
