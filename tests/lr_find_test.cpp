#include <gtest/gtest.h>

#include <cairo.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "tools/lr_find.h"
#include "tools/plot.h"
#include "train/config.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

// ---- the sweep's arithmetic --------------------------------------------------------------------

TEST(LrSweep, LearningRatesAreExponentialFromMinToMax) {
    LrSweepOptions opt;
    opt.lr_min = 1e-5;
    opt.lr_max = 10.0;
    opt.steps = 7;
    EXPECT_DOUBLE_EQ(lr_sweep_lr(opt, 0), 1e-5);
    EXPECT_NEAR(lr_sweep_lr(opt, 6), 10.0, 1e-12);
    for (int i = 1; i < 7; i++)  // six steps over six decades: ×10 each
        EXPECT_NEAR(lr_sweep_lr(opt, i) / lr_sweep_lr(opt, i - 1), 10.0, 1e-9);
}

TEST(LrSweep, SmoothedLossIsTheBiasCorrectedEma) {
    LrSweepOptions opt;
    opt.beta = 0.5;
    opt.divergence_factor = 100.0;
    LrSweep sweep;
    for (double loss : {2.0, 4.0, 4.0}) lr_sweep_record(opt, sweep, {loss, 0.0});
    ASSERT_EQ(sweep.points.size(), 3u);
    // Weights (1−β)β^(n−1−i) over the losses seen, divided by their sum 1 − β^n.
    EXPECT_DOUBLE_EQ(sweep.points[0].smoothed, 2.0);
    EXPECT_DOUBLE_EQ(sweep.points[1].smoothed, (0.25 * 2 + 0.5 * 4) / 0.75);
    EXPECT_DOUBLE_EQ(sweep.points[2].smoothed, (0.125 * 2 + 0.25 * 4 + 0.5 * 4) / 0.875);
    // Without the correction a constant loss would start at (1 − β) of itself.
    LrSweepOptions slow;
    LrSweep flat;
    for (int i = 0; i < 30; i++) lr_sweep_record(slow, flat, {3.0, 0.0});
    for (const auto& p : flat.points) EXPECT_NEAR(p.smoothed, 3.0, 1e-12) << p.step;
    EXPECT_EQ(flat.stop, LrSweepStop::kRunning);
}

TEST(LrSweep, StopsWhenTheSmoothedLossPassesFourTimesTheBest) {
    LrSweepOptions opt;
    opt.beta = 0.9;
    opt.steps = 1000;
    const int n = 50;  // losses of 1, then 10 from step n on
    LrSweep sweep;
    int calls = 0;
    run_lr_sweep(opt, sweep, [&](int step, double lr) {
        calls++;
        EXPECT_DOUBLE_EQ(lr, lr_sweep_lr(opt, step));
        return LrStepResult{step < n ? 1.0 : 10.0, lr};
    });
    // Closed form of the smoothed loss k steps after the jump; the best is 1 (all-ones prefix).
    int expected_k = 0;
    for (int k = 1;; k++) {
        const double b = opt.beta;
        const double smoothed =
            (std::pow(b, k) * (1 - std::pow(b, n)) + (1 - std::pow(b, k)) * 10) /
            (1 - std::pow(b, n + k));
        if (smoothed > 4.0) {
            expected_k = k;
            break;
        }
    }
    EXPECT_EQ(sweep.stop, LrSweepStop::kDiverged);
    EXPECT_EQ(static_cast<int>(sweep.points.size()), n + expected_k);
    EXPECT_EQ(calls, n + expected_k);
    EXPECT_GT(sweep.points.back().smoothed, 4.0 * sweep.best);
    EXPECT_LE(sweep.points[sweep.points.size() - 2].smoothed, 4.0 * sweep.best);
}

TEST(LrSweep, StopsOnANonFiniteLossAndAfterTheLastStep) {
    LrSweepOptions opt;
    opt.steps = 10;
    LrSweep sweep;
    run_lr_sweep(opt, sweep, [](int step, double lr) {
        return LrStepResult{step == 4 ? std::nan("") : 1.0, lr};
    });
    EXPECT_EQ(sweep.stop, LrSweepStop::kNotFinite);
    EXPECT_EQ(sweep.points.size(), 4u);  // the NaN is not a point of the curve

    LrSweep full;
    int calls = 0;
    run_lr_sweep(opt, full, [&](int, double lr) {
        calls++;
        return LrStepResult{1.0, lr};
    });
    EXPECT_EQ(full.stop, LrSweepStop::kCompleted);
    EXPECT_EQ(calls, 10);
    EXPECT_DOUBLE_EQ(full.points.back().lr, opt.lr_max);
}

TEST(LrSweep, PausedSweepContinuesToTheSameCurve) {
    LrSweepOptions opt;
    opt.steps = 40;
    auto loss = [](int step, double lr) {
        return LrStepResult{2.0 + std::sin(step * 0.7) - 0.01 * step, lr};
    };
    LrSweep whole, parts;
    run_lr_sweep(opt, whole, loss);
    run_lr_sweep(opt, parts, loss, [](const LrSweep& s) { return s.points.size() < 13; });
    EXPECT_EQ(parts.points.size(), 13u);
    EXPECT_FALSE(parts.done());
    LrSweep copy = parts;  // as if written and read back
    run_lr_sweep(opt, copy, loss);
    ASSERT_EQ(copy.points.size(), whole.points.size());
    for (std::size_t i = 0; i < whole.points.size(); i++)
        EXPECT_EQ(copy.points[i].smoothed, whole.points[i].smoothed) << i;
}

TEST(LrSweep, BadOptionsNameTheFlag) {
    auto message = [](LrSweepOptions o) {
        try {
            validate_lr_sweep_options(o);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    LrSweepOptions o;
    o.lr_min = 0;
    EXPECT_NE(message(o).find("--lr-min"), std::string::npos);
    o = {};
    o.lr_max = 1e-7;
    EXPECT_NE(message(o).find("--lr-max"), std::string::npos);
    o = {};
    o.steps = 2;
    EXPECT_NE(message(o).find("--steps"), std::string::npos);
    EXPECT_EQ(message(LrSweepOptions{}), "");
}

// A synthetic curve: smoothed = f(log10 lr) on an even grid of log10 lr from -6 to 0.
std::vector<LrSweepPoint> curve(double (*f)(double)) {
    std::vector<LrSweepPoint> pts;
    for (int i = 0; i <= 120; i++) {
        const double x = -6.0 + 0.05 * i;
        pts.push_back({i, std::pow(10.0, x), std::pow(10.0, x), f(x), f(x)});
    }
    return pts;
}

// Within one grid step (0.05 decade) of the expected lr.
void expect_lr_near(double got, double want) {
    EXPECT_LE(std::fabs(std::log10(got / want)), 0.0501) << got << " vs " << want;
}

TEST(LrSuggest, SlopeIsTheDerivativeAgainstLog10Lr) {
    const auto pts = curve([](double x) { return (x + 2) * (x + 2); });
    const auto d = lr_sweep_slope(pts);
    ASSERT_EQ(d.size(), pts.size());
    for (std::size_t i = 1; i + 1 < pts.size(); i++)  // central differences are exact here
        EXPECT_NEAR(d[i], 2 * (std::log10(pts[i].lr) + 2), 1e-8) << i;
}

TEST(LrSuggest, SteepestDescentIsWhereTheCurveFallsFastest) {
    const auto s = suggest_lrs(curve([](double x) { return 5.0 - std::tanh(2.0 * (x + 3.5)); }));
    ASSERT_TRUE(s.steepest);
    expect_lr_near(*s.steepest, std::pow(10.0, -3.5));
}

TEST(LrSuggest, MinimumOverTenIsATenthOfTheLowestPoint) {
    const auto s = suggest_lrs(curve([](double x) { return 3.0 + (x + 2.2) * (x + 2.2); }));
    ASSERT_TRUE(s.min_div10);
    expect_lr_near(*s.min_div10, std::pow(10.0, -3.2));
}

TEST(LrSuggest, BlowUpsAreEveryTurnFromFallingToRising) {
    // Local minima of cos(πx) on [-6, 0] at x = -5, -3, -1.
    const auto s = suggest_lrs(curve([](double x) { return 4.0 + std::cos(M_PI * x); }));
    ASSERT_EQ(s.blow_ups.size(), 3u);
    expect_lr_near(s.blow_ups[0], 1e-5);
    expect_lr_near(s.blow_ups[1], 1e-3);
    expect_lr_near(s.blow_ups[2], 1e-1);
    ASSERT_TRUE(s.blow_up_div10);
    EXPECT_DOUBLE_EQ(*s.blow_up_div10, s.blow_ups.back() / 10);
    // A curve that only falls has none.
    const auto falling = suggest_lrs(curve([](double x) { return -x; }));
    EXPECT_TRUE(falling.blow_ups.empty());
    EXPECT_FALSE(falling.blow_up_div10);
    EXPECT_FALSE(suggest_lrs({}).steepest);
    // Wiggles of a flat start, then a fall that never turns up: turns, but no blow-up.
    const auto no_turn_up = suggest_lrs(curve([](double x) {
        return 2.0 - std::tanh(2.0 * (x + 2.5)) + (x < -4.5 ? 0.002 * std::cos(10 * M_PI * x) : 0);
    }));
    EXPECT_FALSE(no_turn_up.blow_ups.empty());
    ASSERT_TRUE(no_turn_up.steepest);
    expect_lr_near(*no_turn_up.steepest, std::pow(10.0, -2.5));
    EXPECT_FALSE(no_turn_up.blow_up_div10);
}

// SGD on a noisy quadratic f(x) = ½ Σ λᵢ xᵢ², λ from 0.1 to L = 10, with gradient noise σ as a
// mini-batch gives: the iteration x ← x − η(λx + σξ) is stable exactly for η < 2/L, where the
// stationary loss of the top eigendirection, ∝ η σ² / (2 − ηL), goes to infinity.
LrSweep sweep_noisy_quadratic(const LrSweepOptions& opt, double sigma, uint64_t seed) {
    const int n = 20;
    const double L = 10.0;
    std::vector<double> lambda(n), x(n, 1.0);
    for (int i = 0; i < n; i++) lambda[i] = 0.1 * std::pow(L / 0.1, i / double(n - 1));
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> noise(0.0, 1.0);
    LrSweep sweep;
    run_lr_sweep(opt, sweep, [&](int, double lr) {
        double loss = 0.0;
        for (int i = 0; i < n; i++) loss += 0.5 * lambda[i] * x[i] * x[i];
        for (int i = 0; i < n; i++) x[i] -= lr * (lambda[i] * x[i] + sigma * noise(rng));
        return LrStepResult{loss, lr};
    });
    return sweep;
}

TEST(LrFindQuadratic, BlowUpFallsWithinTwoOfTheStabilityLimit) {
    LrSweepOptions opt;
    opt.lr_min = 1e-4;
    opt.lr_max = 10.0;
    opt.steps = 200;
    const double limit = 2.0 / 10.0;
    std::vector<double> ratios;
    for (double sigma : {0.1, 0.3, 1.0})
        for (uint64_t seed = 1; seed <= 20; seed++) {
            const LrSweep sweep = sweep_noisy_quadratic(opt, sigma, seed);
            EXPECT_EQ(sweep.stop, LrSweepStop::kDiverged) << sigma << " " << seed;
            const LrSuggestions s = suggest_lrs(sweep.points);
            ASSERT_FALSE(s.blow_ups.empty()) << sigma << " " << seed;
            ASSERT_TRUE(s.blow_up_div10) << sigma << " " << seed;  // after the steepest descent
            const double ratio = s.blow_ups.back() / limit;
            EXPECT_GE(ratio, 0.5) << "sigma " << sigma << " seed " << seed;
            EXPECT_LE(ratio, 2.0) << "sigma " << sigma << " seed " << seed;
            ratios.push_back(ratio);
        }
    std::sort(ratios.begin(), ratios.end());
    std::printf("blow-up / (2/L): min %.2f median %.2f max %.2f over %zu sweeps\n", ratios.front(),
                ratios[ratios.size() / 2], ratios.back(), ratios.size());
}

// ---- plots -------------------------------------------------------------------------------------

TEST(LrFindPlot, MarkersAreDrawnWhereTheyPoint) {
    const fs::path dir = fs::temp_directory_path() / "agpt_lr_find_test_plot";
    fs::remove_all(dir);
    fs::create_directories(dir);
    Series s;
    s.label = "curve";
    s.x = {0.0, 10.0};
    s.y = {0.0, 0.0};
    s.markers.push_back({5.0, 5.0, "here"});
    s.markers.push_back({50.0, 5.0, "outside the axes"});
    s.y_light = {2.0, 2.0};  // the raw values behind the curve
    Series top;              // sets the y range to [0, 10] before the 4% padding
    top.label = "top";
    top.x = {0.0, 10.0};
    top.y = {10.0, 10.0};
    PlotOptions opt;
    opt.out = (dir / "markers.png").string();
    opt.x_label = "learning rate";
    plot_series({s, top}, opt);
    cairo_surface_t* img = cairo_image_surface_create_from_png(opt.out.c_str());
    ASSERT_EQ(cairo_surface_status(img), CAIRO_STATUS_SUCCESS);
    const unsigned char* data = cairo_image_surface_get_data(img);
    const int stride = cairo_image_surface_get_stride(img);
    auto pixel = [&](int x, int y) { return data + y * stride + 4 * x; };  // B, G, R, A
    // The plot area spans x 80..880 and y 40..500 for y in [-0.4, 10.4]; (5, 5) is (480, 270).
    const unsigned char* centre = pixel(480, 270);
    EXPECT_GT(centre[0] + centre[1] + centre[2], 3 * 240);  // the ring's white inside
    const unsigned char* ring = pixel(485, 270);            // on the ring, in the first colour
    EXPECT_NEAR(ring[0], 181, 40);
    EXPECT_NEAR(ring[1], 120, 40);
    EXPECT_NEAR(ring[2], 31, 40);
    // y = 2 is at pixel row 397.8: a light (blended) line of the same colour.
    const unsigned char* a = pixel(300, 397);
    const unsigned char* b = pixel(300, 398);
    const unsigned char* light = a[2] < b[2] ? a : b;
    EXPECT_GT(light[0], light[2] + 15);  // bluish
    EXPECT_GT(light[2], 120);            // but light, not the solid curve's 31
    cairo_surface_destroy(img);
    opt.log_x = true;  // x = 0 has no place on a log axis
    EXPECT_THROW(plot_series({s}, opt), Error);
}

// ---- on a model --------------------------------------------------------------------------------

fs::path fresh_dir(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("agpt_lr_find_test_" + name);
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

ConfigOverrides tiny_job(const fs::path& dump, const std::string& name) {
    return {{"job.dump_folder", dump.string()}, {"job.name", name},
            {"model.flavor", "tiny"},           {"training.local_batch_size", "4"},
            {"training.seq_len", "32"},         {"training.threads", "2"}};
}

LrFindOptions short_sweep(int steps) {
    LrFindOptions o;
    o.sweep.lr_min = 1e-5;
    o.sweep.lr_max = 3.0;
    o.sweep.steps = steps;
    o.save_every = 4;
    return o;
}

TEST(LrFindModel, TheScheduleCannotChangeTheSweptLr) {
    const fs::path dump = fresh_dir("schedule");
    // Warm-up, then cosine decay to a tenth over 80% of 12 steps: every step's factor is != 1.
    ConfigOverrides scheduled = tiny_job(dump, "scheduled");
    scheduled.insert(scheduled.end(), {{"optimizer.name", "AdamW,Muon"},
                                       {"lr_scheduler.warmup_steps", "5"},
                                       {"lr_scheduler.decay_ratio", "0.8"},
                                       {"lr_scheduler.decay_type", "cosine"},
                                       {"lr_scheduler.min_lr_factor", "0.1"},
                                       {"training.steps", "12"}});
    ConfigOverrides constant = tiny_job(dump, "constant");
    constant.insert(constant.end(), {{"optimizer.name", "AdamW"},
                                     {"optimizer.name", "Muon"},
                                     {"lr_scheduler.warmup_steps", "0"},
                                     {"lr_scheduler.decay_ratio", "0"}});
    const auto with_schedule =
        lr_find(lr_find_job_configs("", scheduled), short_sweep(12), nullptr);
    const auto without = lr_find(lr_find_job_configs("", constant), short_sweep(12), nullptr);
    ASSERT_TRUE(with_schedule.complete);
    ASSERT_EQ(with_schedule.results.size(), 2u);
    for (std::size_t k = 0; k < 2; k++) {
        const auto& a = with_schedule.results[k].sweep.points;
        const auto& b = without.results[k].sweep.points;
        ASSERT_EQ(a.size(), b.size());
        for (std::size_t i = 0; i < a.size(); i++) {
            // What the optimizer used is the sweep's lr, and the curve is the same bit for bit.
            EXPECT_NEAR(a[i].applied_lr, a[i].lr, 1e-12 * a[i].lr) << k << " " << i;
            EXPECT_EQ(a[i].loss, b[i].loss) << k << " " << i;
        }
    }
    // Each optimizer starts from the same weights and data: step 0 measures the same loss.
    EXPECT_EQ(with_schedule.results[0].sweep.points[0].loss,
              with_schedule.results[1].sweep.points[0].loss);
    EXPECT_NE(with_schedule.results[0].sweep.points[3].loss,
              with_schedule.results[1].sweep.points[3].loss);
}

TEST(LrFindModel, WritesCsvJsonAndPlotThatParse) {
    const fs::path dump = fresh_dir("files");
    ConfigOverrides o = tiny_job(dump, "files");
    o.emplace_back("optimizer.name", "AdamW,Lion");
    const auto summary = lr_find(lr_find_job_configs("", o), short_sweep(10), nullptr);
    ASSERT_TRUE(summary.complete);
    const fs::path run = dump / "files";
    EXPECT_EQ(summary.plot, (run / "lr_find.png").string());
    cairo_surface_t* img = cairo_image_surface_create_from_png(summary.plot.c_str());
    EXPECT_EQ(cairo_surface_status(img), CAIRO_STATUS_SUCCESS);
    cairo_surface_destroy(img);
    for (const auto& r : summary.results) {
        std::ifstream json_in(r.json);
        const auto j = nlohmann::json::parse(json_in);
        EXPECT_EQ(j["optimizer"], r.optimizer);
        EXPECT_EQ(j["steps"], 10);
        const auto& pts = j["sweep"]["points"];
        ASSERT_EQ(pts.size(), r.sweep.points.size());
        EXPECT_DOUBLE_EQ(pts[0]["lr"].get<double>(), 1e-5);
        EXPECT_TRUE(j["suggestions"].contains("steepest"));
        EXPECT_TRUE(j["suggestions"]["steepest"].is_number());
        std::ifstream csv_in(r.csv);
        std::string header, line;
        std::getline(csv_in, header);
        EXPECT_EQ(header, "step,lr,optimizer_lr,loss,smoothed_loss,slope");
        std::size_t rows = 0;
        while (std::getline(csv_in, line)) {
            EXPECT_EQ(std::count(line.begin(), line.end(), ','), 5) << line;
            EXPECT_EQ(std::stod(line.substr(line.find(',', line.find(',') + 1) + 1)),
                      r.sweep.points[rows].applied_lr);
            rows++;
        }
        EXPECT_EQ(rows, r.sweep.points.size());
        EXPECT_FALSE(fs::exists(run / ("lr_find_state_" + r.optimizer)));  // removed when done
    }
}

TEST(LrFindModel, ResumeAfterAStopGivesTheUninterruptedCurve) {
    const fs::path dump = fresh_dir("resume");
    auto job = [&](const std::string& name) {
        ConfigOverrides o = tiny_job(dump, name);
        o.emplace_back("optimizer.name", "AdamW,Muon");
        return lr_find_job_configs("", o);
    };
    const auto whole = lr_find(job("whole"), short_sweep(15), nullptr);
    ASSERT_TRUE(whole.complete);

    // Stopped after 6 steps (AdamW saved at 4); then after 15 more, in which AdamW continues
    // from its save and finishes and Muon starts; then to the end.
    LrFindOptions opt = short_sweep(15);
    opt.stop_after_steps = 6;
    const auto first = lr_find(job("parts"), opt, nullptr);
    EXPECT_FALSE(first.complete);
    EXPECT_TRUE(first.plot.empty());
    EXPECT_TRUE(fs::exists(dump / "parts" / "lr_find_state_AdamW"));
    opt.stop_after_steps = 15;
    const auto second = lr_find(job("parts"), opt, nullptr);
    EXPECT_FALSE(second.complete);
    ASSERT_EQ(second.results.size(), 2u);
    EXPECT_TRUE(second.results[0].sweep.done());
    EXPECT_FALSE(second.results[1].sweep.done());
    opt.stop_after_steps = -1;
    const auto third = lr_find(job("parts"), opt, nullptr);
    ASSERT_TRUE(third.complete);
    EXPECT_TRUE(third.results[0].reused);  // a finished optimizer is not re-run
    EXPECT_FALSE(third.results[1].reused);
    for (std::size_t k = 0; k < 2; k++) {
        const auto& a = whole.results[k].sweep.points;
        const auto& b = third.results[k].sweep.points;
        ASSERT_EQ(a.size(), b.size()) << k;
        for (std::size_t i = 0; i < a.size(); i++) {
            EXPECT_EQ(a[i].loss, b[i].loss) << k << " " << i;
            EXPECT_EQ(a[i].smoothed, b[i].smoothed) << k << " " << i;
        }
        EXPECT_EQ(whole.results[k].suggestions.steepest, third.results[k].suggestions.steepest);
    }
}

TEST(LrFindModel, ForeignOrChangedFoldersAreRefusedAndLeftIntact) {
    const fs::path dump = fresh_dir("refuse");
    const auto cfgs = lr_find_job_configs("", tiny_job(dump, "run"));
    ASSERT_TRUE(lr_find(cfgs, short_sweep(5), nullptr).complete);
    const fs::path json = dump / "run" / "lr_find_AdamW.json";
    const auto before = fs::last_write_time(json);
    try {
        lr_find(cfgs, short_sweep(6), nullptr);
        FAIL() << "a different --steps in the same folder was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("steps"), std::string::npos) << e.what();
    }
    EXPECT_EQ(fs::last_write_time(json), before);
    // A damaged result file is named, not trusted and not overwritten.
    for (const std::string text : {"{\"optimizer\": ", "{\"optimizer_config\": 5}", "[1, 2]"}) {
        std::ofstream(json) << text;
        try {
            lr_find(cfgs, short_sweep(5), nullptr);
            FAIL() << "a damaged " << json << " was accepted: " << text;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("lr_find_AdamW.json"), std::string::npos)
                << e.what();
        }
        std::ifstream in(json);
        EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), text);
    }
    // A folder that is not an lr-find's (e.g. a training run) is refused as train refuses it.
    fs::create_directories(dump / "trained");
    EXPECT_THROW(
        lr_find(lr_find_job_configs("", tiny_job(dump, "trained")), short_sweep(5), nullptr),
        Error);
    // Twice the same optimizer, and optimizer-dependent keys, are checked before any work.
    ConfigOverrides twice = tiny_job(dump, "twice");
    twice.emplace_back("optimizer.name", "AdamW,adamw");
    EXPECT_THROW(lr_find_job_configs("", twice), Error);
    EXPECT_FALSE(fs::exists(dump / "twice"));
}

TEST(LrFindConfigs, OptimizerKeysGoToTheOptimizersThatHaveThem) {
    const auto cfgs = lr_find_job_configs("", {{"optimizer.name", "adamw, Muon"},
                                               {"optimizer.lr", "0.01"},
                                               {"optimizer.beta2", "0.99"},
                                               {"optimizer.momentum", "0.9"},
                                               {"optimizer.adamw.lr", "3e-3"},
                                               {"model.flavor", "tiny"}});
    ASSERT_EQ(cfgs.size(), 2u);
    EXPECT_EQ(cfgs[0].optimizer.name, "AdamW");
    EXPECT_EQ(std::get<double>(cfgs[0].optimizer.hyper.at("lr")), 0.01);
    EXPECT_EQ(std::get<double>(cfgs[0].optimizer.hyper.at("beta2")), 0.99);
    EXPECT_EQ(cfgs[0].optimizer.hyper.count("momentum"), 0u);
    EXPECT_TRUE(cfgs[0].optimizer.adamw.empty());
    EXPECT_EQ(cfgs[1].optimizer.name, "Muon");
    EXPECT_EQ(std::get<double>(cfgs[1].optimizer.hyper.at("lr")), 0.01);
    EXPECT_EQ(std::get<double>(cfgs[1].optimizer.hyper.at("momentum")), 0.9);
    EXPECT_EQ(cfgs[1].optimizer.hyper.count("beta2"), 0u);
    EXPECT_EQ(std::get<double>(cfgs[1].optimizer.adamw.at("lr")), 3e-3);
    EXPECT_EQ(cfgs[1].model.flavor, "tiny");
    // A key no listed optimizer has is an error naming it; one optimizer keeps train's rules.
    try {
        lr_find_job_configs("", {{"optimizer.name", "AdamW,Muon"}, {"optimizer.momentm", "0.9"}});
        FAIL() << "an unknown key was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("optimizer.momentm"), std::string::npos) << e.what();
    }
    EXPECT_THROW(
        lr_find_job_configs("", {{"optimizer.name", "AdamW"}, {"optimizer.momentum", "1"}}), Error);
    EXPECT_THROW(lr_find_job_configs("", {{"optimizer.name", "AdamW,NoSuch"}}), Error);
}

}  // namespace
}  // namespace agpt
