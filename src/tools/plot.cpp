#include "tools/plot.h"

#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"

namespace agpt {

namespace fs = std::filesystem;

Series read_metric(const std::string& run_dir, const std::string& metric) {
    const fs::path path = fs::path(run_dir) / "metrics.jsonl";
    std::ifstream in(path);
    if (!in) fail("{}: cannot open file", path.string());
    Series s;
    s.label = fs::path(run_dir).filename().string();
    if (s.label.empty()) s.label = fs::path(run_dir).parent_path().filename().string();
    std::set<std::string> seen;
    for (std::string line; std::getline(in, line);) {
        nlohmann::json row;
        try {
            row = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception&) {
            continue;
        }
        if (!row.is_object()) continue;
        for (const auto& [k, v] : row.items()) seen.insert(k);
        if (!row.contains(metric) || !row.contains("step") || !row[metric].is_number()) continue;
        s.x.push_back(row["step"].get<double>());
        s.y.push_back(row[metric].get<double>());
    }
    if (s.x.empty()) {
        seen.erase("step");
        std::string known;
        for (const auto& k : seen) known += (known.empty() ? "" : ", ") + k;
        fail("{}: no '{}' values (it has: {})", path.string(), metric,
             known.empty() ? "nothing" : known);
    }
    return s;
}

std::vector<double> ema_smooth(const std::vector<double>& y, double weight) {
    if (weight <= 0.0) return y;
    std::vector<double> out(y.size());
    double avg = 0.0, norm = 0.0;
    for (std::size_t i = 0; i < y.size(); i++) {
        avg = weight * avg + (1.0 - weight) * y[i];
        norm = weight * norm + (1.0 - weight);
        out[i] = avg / norm;
    }
    return out;
}

namespace {

// "Nice" tick values covering [lo, hi] (1, 2, 5 × 10^k steps).
std::vector<double> linear_ticks(double lo, double hi) {
    const double span = hi - lo;
    const double raw = span / 6.0;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = mag;
    for (double m : {1.0, 2.0, 5.0, 10.0})
        if (m * mag >= raw) {
            step = m * mag;
            break;
        }
    std::vector<double> t;
    for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) t.push_back(v);
    return t;
}

std::vector<double> log_ticks(double lo, double hi) {  // lo, hi in log10 units
    std::vector<double> t;
    for (double e = std::ceil(lo); e <= std::floor(hi); e += 1.0) t.push_back(e);
    if (t.size() < 2) return linear_ticks(lo, hi);
    return t;
}

std::string tick_label(double v, bool log) {
    if (log) return fmt::format("1e{}", static_cast<int>(std::lround(v)));
    if (v != 0 && (std::fabs(v) >= 1e5 || std::fabs(v) < 1e-3)) return fmt::format("{:.1e}", v);
    return fmt::format("{:g}", v);
}

// Tableau-like palette: distinguishable, colour-blind-friendlier than pure hues.
const double kColors[][3] = {{0.12, 0.47, 0.71}, {1.00, 0.50, 0.05}, {0.17, 0.63, 0.17},
                             {0.84, 0.15, 0.16}, {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29},
                             {0.89, 0.47, 0.76}, {0.50, 0.50, 0.50}, {0.74, 0.74, 0.13},
                             {0.09, 0.75, 0.81}};

void draw(cairo_t* cr, const std::vector<Series>& series, const PlotOptions& opt) {
    const double W = opt.width, H = opt.height;
    const double left = 80, right = 20, top = 40, bottom = 60;
    auto tx = [&](double x) { return opt.log_x ? std::log10(x) : x; };
    auto ty = [&](double y) { return opt.log_y ? std::log10(y) : y; };
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (const auto& s : series)
        for (std::size_t i = 0; i < s.x.size(); i++) {
            x0 = std::min(x0, tx(s.x[i]));
            x1 = std::max(x1, tx(s.x[i]));
            y0 = std::min(y0, ty(s.y[i]));
            y1 = std::max(y1, ty(s.y[i]));
        }
    if (x1 == x0) x1 = x0 + 1;
    if (y1 == y0) y1 = y0 + 1;
    const double pad = 0.04 * (y1 - y0);
    y0 -= pad;
    y1 += pad;
    auto px = [&](double x) { return left + (tx(x) - x0) / (x1 - x0) * (W - left - right); };
    auto py = [&](double y) { return H - bottom - (ty(y) - y0) / (y1 - y0) * (H - top - bottom); };

    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 12);
    cairo_set_line_width(cr, 1);

    // Grid, ticks and tick labels.
    cairo_text_extents_t ext;
    for (double v : opt.log_x ? log_ticks(x0, x1) : linear_ticks(x0, x1)) {
        const double x = left + (v - x0) / (x1 - x0) * (W - left - right);
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, x, top);
        cairo_line_to(cr, x, H - bottom);
        cairo_stroke(cr);
        const std::string label = tick_label(v, opt.log_x);
        cairo_text_extents(cr, label.c_str(), &ext);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        cairo_move_to(cr, x - ext.width / 2, H - bottom + 16);
        cairo_show_text(cr, label.c_str());
    }
    for (double v : opt.log_y ? log_ticks(y0, y1) : linear_ticks(y0, y1)) {
        const double y = H - bottom - (v - y0) / (y1 - y0) * (H - top - bottom);
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, left, y);
        cairo_line_to(cr, W - right, y);
        cairo_stroke(cr);
        const std::string label = tick_label(v, opt.log_y);
        cairo_text_extents(cr, label.c_str(), &ext);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        cairo_move_to(cr, left - ext.width - 6, y + ext.height / 2);
        cairo_show_text(cr, label.c_str());
    }
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_rectangle(cr, left, top, W - left - right, H - top - bottom);
    cairo_stroke(cr);

    // Axis labels and title.
    cairo_set_font_size(cr, 14);
    const std::string xlabel = opt.log_x ? opt.x_label + " (log scale)" : opt.x_label;
    cairo_text_extents(cr, xlabel.c_str(), &ext);
    cairo_move_to(cr, left + (W - left - right - ext.width) / 2, H - 18);
    cairo_show_text(cr, xlabel.c_str());
    const std::string ylabel = opt.metric +
                               (opt.smooth > 0 ? fmt::format(" (EMA {})", opt.smooth) : "") +
                               (opt.log_y ? " (log scale)" : "");
    cairo_text_extents(cr, ylabel.c_str(), &ext);
    cairo_save(cr);
    cairo_move_to(cr, 22, top + (H - top - bottom + ext.width) / 2);
    cairo_rotate(cr, -M_PI / 2);
    cairo_show_text(cr, ylabel.c_str());
    cairo_restore(cr);
    cairo_set_font_size(cr, 16);
    const std::string title = opt.title.empty() ? opt.metric : opt.title;
    cairo_text_extents(cr, title.c_str(), &ext);
    cairo_move_to(cr, left + (W - left - right - ext.width) / 2, 26);
    cairo_show_text(cr, title.c_str());

    // Curves, clipped to the plot area, then the legend.
    cairo_save(cr);
    cairo_rectangle(cr, left, top, W - left - right, H - top - bottom);
    cairo_clip(cr);
    cairo_set_line_width(cr, 1.8);
    for (std::size_t k = 0; k < series.size(); k++) {
        const auto& c = kColors[k % std::size(kColors)];
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        const auto& s = series[k];
        for (std::size_t i = 0; i < s.x.size(); i++)
            (i == 0 ? cairo_move_to : cairo_line_to)(cr, px(s.x[i]), py(s.y[i]));
        if (s.x.size() == 1) cairo_arc(cr, px(s.x[0]), py(s.y[0]), 2.5, 0, 2 * M_PI);
        cairo_stroke(cr);
    }
    cairo_restore(cr);
    cairo_set_font_size(cr, 12);
    for (std::size_t k = 0; k < series.size(); k++) {
        const auto& c = kColors[k % std::size(kColors)];
        const double y = top + 16 + 18.0 * static_cast<double>(k);
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        cairo_set_line_width(cr, 3);
        cairo_move_to(cr, W - right - 170, y - 4);
        cairo_line_to(cr, W - right - 150, y - 4);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        cairo_move_to(cr, W - right - 144, y);
        cairo_show_text(cr, series[k].label.c_str());
    }
}

}  // namespace

void plot_runs(const std::vector<std::string>& run_dirs, const PlotOptions& opt) {
    if (run_dirs.empty()) fail("plot: no run folders given");
    if (opt.smooth < 0 || opt.smooth >= 1) fail("--smooth {}: must be in [0, 1)", opt.smooth);
    const std::string ext = fs::path(opt.out).extension().string();
    if (ext != ".png" && ext != ".svg")
        fail("--out {}: the extension must be .png or .svg", opt.out);
    std::vector<Series> series;
    for (const auto& dir : run_dirs) {
        Series s = read_metric(dir, opt.metric);
        s.y = ema_smooth(s.y, opt.smooth);
        for (std::size_t i = 0; i < s.x.size(); i++) {
            if (opt.log_x && s.x[i] <= 0)
                fail("{}: step {} cannot be drawn on a log scale", dir, s.x[i]);
            if (opt.log_y && s.y[i] <= 0)
                fail("{}: {} = {} cannot be drawn on a log scale", dir, opt.metric, s.y[i]);
        }
        series.push_back(std::move(s));
    }
    plot_series(series, opt);
}

void plot_series(const std::vector<Series>& series, const PlotOptions& opt) {
    const std::string ext = fs::path(opt.out).extension().string();
    if (ext != ".png" && ext != ".svg")
        fail("--out {}: the extension must be .png or .svg", opt.out);
    // Draw to a temporary name, then rename: an existing plot is replaced only by a whole one.
    const std::string tmp = opt.out + ".tmp";
    cairo_surface_t* surface =
        ext == ".svg" ? cairo_svg_surface_create(tmp.c_str(), opt.width, opt.height)
                      : cairo_image_surface_create(CAIRO_FORMAT_ARGB32, opt.width, opt.height);
    cairo_t* cr = cairo_create(surface);
    draw(cr, series, opt);
    cairo_destroy(cr);
    cairo_status_t status = CAIRO_STATUS_SUCCESS;
    if (ext == ".png") status = cairo_surface_write_to_png(surface, tmp.c_str());
    cairo_surface_finish(surface);
    if (status == CAIRO_STATUS_SUCCESS) status = cairo_surface_status(surface);
    cairo_surface_destroy(surface);
    if (status != CAIRO_STATUS_SUCCESS)
        fail("{}: cannot write plot: {}", opt.out, cairo_status_to_string(status));
    fs::rename(tmp, opt.out);
}

}  // namespace agpt
