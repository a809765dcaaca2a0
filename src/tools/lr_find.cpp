#include "tools/lr_find.h"

#include <fmt/format.h>
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/text_file.h"
#include "core/timer.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "model/transformer.h"
#include "optim/optimizer.h"
#include "tools/plot.h"
#include "train/checkpoint.h"
#include "train/cuda_training.h"
#include "train/trainer.h"

namespace agpt {

namespace fs = std::filesystem;

// ---- the sweep ---------------------------------------------------------------------------------

void validate_lr_sweep_options(const LrSweepOptions& opt) {
    if (!(opt.lr_min > 0.0) || !std::isfinite(opt.lr_min))
        fail("--lr-min {}: must be a finite number > 0", opt.lr_min);
    if (!(opt.lr_max > opt.lr_min) || !std::isfinite(opt.lr_max))
        fail("--lr-max {}: must be finite and > --lr-min ({})", opt.lr_max, opt.lr_min);
    if (opt.steps < 3) fail("--steps {}: must be >= 3 (suggestions need three points)", opt.steps);
    if (!(opt.beta >= 0.0 && opt.beta < 1.0)) fail("--beta {}: must be in [0, 1)", opt.beta);
    if (!(opt.divergence_factor > 1.0))
        fail("--divergence-factor {}: must be > 1", opt.divergence_factor);
}

double lr_sweep_lr(const LrSweepOptions& opt, int step) {
    const double t = static_cast<double>(step) / static_cast<double>(opt.steps - 1);
    return opt.lr_min * std::pow(opt.lr_max / opt.lr_min, t);
}

const char* lr_sweep_stop_name(LrSweepStop stop) {
    switch (stop) {
        case LrSweepStop::kRunning:
            return "running";
        case LrSweepStop::kCompleted:
            return "completed";
        case LrSweepStop::kDiverged:
            return "diverged";
        case LrSweepStop::kNotFinite:
            return "not_finite";
    }
    return "running";
}

void lr_sweep_record(const LrSweepOptions& opt, LrSweep& sweep, const LrStepResult& result) {
    if (sweep.done()) return;
    if (!std::isfinite(result.loss)) {
        sweep.stop = LrSweepStop::kNotFinite;
        return;
    }
    const int step = static_cast<int>(sweep.points.size());
    sweep.ema = opt.beta * sweep.ema + (1.0 - opt.beta) * result.loss;
    // Dividing by 1 − β^(n) removes the pull towards the EMA's zero start.
    const double smoothed = sweep.ema / (1.0 - std::pow(opt.beta, step + 1));
    sweep.points.push_back(
        {step, lr_sweep_lr(opt, step), result.applied_lr, result.loss, smoothed});
    if (step > 0 && smoothed > opt.divergence_factor * sweep.best) {
        sweep.stop = LrSweepStop::kDiverged;
        return;
    }
    sweep.best = std::min(sweep.best, smoothed);
    if (step + 1 >= opt.steps) sweep.stop = LrSweepStop::kCompleted;
}

void run_lr_sweep(const LrSweepOptions& opt, LrSweep& sweep, const LrStepFn& step_fn,
                  const LrAfterStepFn& after_step) {
    validate_lr_sweep_options(opt);
    while (!sweep.done()) {
        const int step = static_cast<int>(sweep.points.size());
        lr_sweep_record(opt, sweep, step_fn(step, lr_sweep_lr(opt, step)));
        if (after_step && !after_step(sweep)) return;
    }
}

std::vector<double> lr_sweep_slope(const std::vector<LrSweepPoint>& points) {
    const std::size_t n = points.size();
    if (n < 2) return {};
    std::vector<double> x(n), y(n), d(n);
    for (std::size_t i = 0; i < n; i++) {
        x[i] = std::log10(points[i].lr);
        y[i] = points[i].smoothed;
    }
    d[0] = (y[1] - y[0]) / (x[1] - x[0]);
    d[n - 1] = (y[n - 1] - y[n - 2]) / (x[n - 1] - x[n - 2]);
    // numpy.gradient's second-order formula for uneven spacing (equal here up to rounding).
    for (std::size_t i = 1; i + 1 < n; i++) {
        const double h0 = x[i] - x[i - 1], h1 = x[i + 1] - x[i];
        d[i] = (h0 * h0 * y[i + 1] - h1 * h1 * y[i - 1] + (h1 * h1 - h0 * h0) * y[i]) /
               (h0 * h1 * (h0 + h1));
    }
    return d;
}

LrSuggestions suggest_lrs(const std::vector<LrSweepPoint>& points) {
    LrSuggestions s;
    if (points.size() < 3) return s;
    const std::vector<double> d = lr_sweep_slope(points);
    const auto steep = std::min_element(d.begin(), d.end()) - d.begin();
    s.steepest = points[steep].lr;
    const auto lowest = std::min_element(
        points.begin(), points.end(),
        [](const LrSweepPoint& a, const LrSweepPoint& b) { return a.smoothed < b.smoothed; });
    s.min_div10 = lowest->lr / 10.0;
    for (std::size_t i = 1; i < d.size(); i++)
        if (d[i - 1] < 0.0 && d[i] >= 0.0) s.blow_ups.push_back(points[i].lr);
    // A turn before the steepest descent is a wiggle of the flat start, not the blow-up.
    if (!s.blow_ups.empty() && s.blow_ups.back() > *s.steepest)
        s.blow_up_div10 = s.blow_ups.back() / 10.0;
    return s;
}

// ---- configs -----------------------------------------------------------------------------------

namespace {

bool optimizer_known(const std::string& name) {
    try {
        optimizer_info(name);
        return true;
    } catch (const Error&) {
        return false;
    }
}

}  // namespace

std::vector<JobConfig> lr_find_job_configs(const std::string& toml_path,
                                           const ConfigOverrides& overrides) {
    ConfigOverrides rest;
    std::vector<std::string> names;
    for (const auto& [key, value] : overrides) {
        if (key != "optimizer.name") {
            rest.emplace_back(key, value);
            continue;
        }
        std::stringstream list(value);
        for (std::string name; std::getline(list, name, ',');) {
            name.erase(0, name.find_first_not_of(" \t"));
            name.erase(name.find_last_not_of(" \t") + 1);
            if (name.empty()) fail("--optimizer.name {}: empty name in the list", value);
            names.push_back(name);
        }
    }
    std::vector<JobConfig> cfgs;
    if (names.empty()) {
        cfgs.push_back(load_job_config(toml_path, rest));
        return cfgs;
    }
    // With several optimizers, an [optimizer] key given on the command line goes to those of
    // them that take it (--optimizer.momentum to Muon, --optimizer.beta2 to AdamW); a key none
    // of them takes is refused as `agpt train` refuses it.
    auto takes = [](const std::string& optimizer, const std::string& key) {
        const OptimizerInfo& info = optimizer_info(optimizer);
        const bool routed = key.starts_with("optimizer.adamw.");
        const std::string leaf = key.substr(routed ? 16 : 10);
        if (routed && !info.routes_to_adamw) return false;
        const auto& keys = routed ? routed_adamw_keys() : info.keys;
        return std::any_of(keys.begin(), keys.end(),
                           [&](const HyperKey& k) { return k.key == leaf; });
    };
    std::set<std::string> seen;
    for (const auto& name : names) {
        ConfigOverrides one;
        for (const auto& [key, value] : rest) {
            const bool optimizer_key = key.starts_with("optimizer.");
            if (!optimizer_key || names.size() == 1 || !optimizer_known(name)) {
                one.emplace_back(key, value);
                continue;
            }
            const bool anyone = std::any_of(names.begin(), names.end(), [&](const auto& n) {
                return optimizer_known(n) && takes(n, key);
            });
            if (takes(name, key) || !anyone) one.emplace_back(key, value);
        }
        one.emplace_back("optimizer.name", name);
        cfgs.push_back(load_job_config(toml_path, one));
        if (!seen.insert(cfgs.back().optimizer.name).second)
            fail("--optimizer.name: {} is given twice", cfgs.back().optimizer.name);
    }
    return cfgs;
}

// ---- on a model --------------------------------------------------------------------------------

namespace {

// What a sweep's identity excludes: the optimizer (one sweep each) and the keys lr-find does
// not use (the schedule is suspended; steps, validation, samples and checkpoints do not apply).
std::string common_config_toml(JobConfig cfg) {
    cfg.optimizer = JobConfig::Optimizer{};
    cfg.lr_scheduler = JobConfig{}.lr_scheduler;
    cfg.training.steps = JobConfig{}.training.steps;
    cfg.validation = JobConfig::Validation{};
    cfg.metrics = JobConfig::Metrics{};
    cfg.checkpoint.enable = false;
    cfg.checkpoint.interval = JobConfig{}.checkpoint.interval;
    cfg.sample = JobConfig::Sample{};
    return job_config_to_toml(cfg);
}

// The [optimizer] part of the resolved config, which tells two sweeps of one name apart.
std::string optimizer_toml(const JobConfig& cfg) {
    const std::string all = job_config_to_toml(cfg);
    const auto begin = all.find("[optimizer]");
    if (begin == std::string::npos) return all;
    auto end = all.find("\n[", begin + 1);
    while (end != std::string::npos && all.compare(end + 1, 11, "[optimizer.") == 0)
        end = all.find("\n[", end + 1);
    return all.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

nlohmann::json sweep_options_json(const LrSweepOptions& o) {
    return {{"lr_min", o.lr_min},
            {"lr_max", o.lr_max},
            {"steps", o.steps},
            {"beta", o.beta},
            {"divergence_factor", o.divergence_factor}};
}

nlohmann::json number_or_null(double v) {
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}
double number_or_nan(const nlohmann::json& j) {
    return j.is_number() ? j.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

nlohmann::json sweep_to_json(const LrSweep& sweep) {
    nlohmann::json points = nlohmann::json::array();
    for (const auto& p : sweep.points)
        points.push_back({{"step", p.step},
                          {"lr", p.lr},
                          {"optimizer_lr", number_or_null(p.applied_lr)},
                          {"loss", p.loss},
                          {"smoothed_loss", p.smoothed}});
    return {{"points", points},
            {"ema", sweep.ema},
            {"best", number_or_null(sweep.best)},
            {"stop", lr_sweep_stop_name(sweep.stop)}};
}

// The "sweep" member of a saved or finished sweep's file.
LrSweep sweep_from_json(const nlohmann::json& file, const std::string& where) {
    try {
        const nlohmann::json& j = file.at("sweep");
        LrSweep s;
        for (const auto& p : j.at("points"))
            s.points.push_back({p.at("step").get<int>(), p.at("lr").get<double>(),
                                number_or_nan(p.at("optimizer_lr")), p.at("loss").get<double>(),
                                p.at("smoothed_loss").get<double>()});
        s.ema = j.at("ema").get<double>();
        s.best = j.at("best").is_number() ? j.at("best").get<double>()
                                          : std::numeric_limits<double>::infinity();
        const std::string stop = j.at("stop").get<std::string>();
        for (auto k : {LrSweepStop::kRunning, LrSweepStop::kCompleted, LrSweepStop::kDiverged,
                       LrSweepStop::kNotFinite})
            if (stop == lr_sweep_stop_name(k)) s.stop = k;
        return s;
    } catch (const nlohmann::json::exception& e) {
        fail("{}: not a valid lr-find sweep: {}", where, e.what());
    }
}

nlohmann::json suggestions_json(const LrSuggestions& s) {
    auto opt = [](const std::optional<double>& v) {
        return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
    };
    return {{"steepest", opt(s.steepest)},
            {"min_div10", opt(s.min_div10)},
            {"blow_ups", s.blow_ups},
            {"blow_up_div10", opt(s.blow_up_div10)}};
}

nlohmann::json read_json(const fs::path& p) {
    std::ifstream in(p);
    if (!in) fail("{}: cannot open file", p.string());
    try {
        return nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
        fail("{}: not valid JSON ({}); move the file away to redo this part", p.string(), e.what());
    }
}

// "" when the key is missing or not a string (a hand-edited or foreign file).
std::string string_field(const nlohmann::json& j, const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string sweep_csv(const LrSweep& sweep) {
    const std::vector<double> slope = lr_sweep_slope(sweep.points);
    std::string out = "step,lr,optimizer_lr,loss,smoothed_loss,slope\n";
    for (std::size_t i = 0; i < sweep.points.size(); i++) {
        const auto& p = sweep.points[i];
        out += fmt::format("{},{:.17g},{:.17g},{:.17g},{:.17g},{}\n", p.step, p.lr, p.applied_lr,
                           p.loss, p.smoothed,
                           i < slope.size() ? fmt::format("{:.17g}", slope[i]) : "");
    }
    return out;
}

// The smoothed loss at `lr`, interpolated linearly in log10(lr); NaN outside the swept range.
double smoothed_at(const std::vector<LrSweepPoint>& pts, double lr) {
    for (std::size_t i = 1; i < pts.size(); i++)
        if (lr >= pts[i - 1].lr && lr <= pts[i].lr) {
            const double t = (std::log(lr) - std::log(pts[i - 1].lr)) /
                             (std::log(pts[i].lr) - std::log(pts[i - 1].lr));
            return pts[i - 1].smoothed + t * (pts[i].smoothed - pts[i - 1].smoothed);
        }
    return std::numeric_limits<double>::quiet_NaN();
}

class ProgressLog {
  public:
    ProgressLog(std::FILE* console, const fs::path& path) : console_(console) {
        file_ = std::fopen(path.c_str(), "a");
        if (!file_) fail("{}: cannot open for writing", path.string());
    }
    ~ProgressLog() { std::fclose(file_); }
    ProgressLog(const ProgressLog&) = delete;
    ProgressLog& operator=(const ProgressLog&) = delete;
    template <typename... Args>
    void line(fmt::format_string<Args...> f, Args&&... args) {
        const std::string s = fmt::format(f, std::forward<Args>(args)...) + "\n";
        if (console_) {
            std::fputs(s.c_str(), console_);
            std::fflush(console_);
        }
        std::fputs(s.c_str(), file_);
        std::fflush(file_);
    }

  private:
    std::FILE* console_;
    std::FILE* file_;
};

std::string format_lr(const std::optional<double>& v) {
    return v ? fmt::format("{:.3g}", *v) : std::string("-");
}

}  // namespace

LrFindSummary lr_find(const std::vector<JobConfig>& cfgs, const LrFindOptions& opt,
                      std::FILE* progress) {
    if (cfgs.empty()) fail("lr-find: no optimizer given");
    validate_lr_sweep_options(opt.sweep);
    if (opt.save_every < 0) fail("--save-every {}: must be >= 0", opt.save_every);
    const JobConfig& base = cfgs.front();
    const std::string common = common_config_toml(base);
    std::set<std::string> names;
    for (const auto& cfg : cfgs) {
        validate_job_config(cfg);
        if (cfg.training.device == "cuda") check_cuda_training(cfg);
        if (common_config_toml(cfg) != common)
            fail(
                "lr-find: the configs differ in more than [optimizer]; sweeps of several "
                "optimizers share the model, data and seed");
        if (!names.insert(cfg.optimizer.name).second)
            fail("lr-find: optimizer {} is given twice", cfg.optimizer.name);
    }
    const int threads = set_thread_count(base.training.threads);
    const int B = base.training.local_batch_size, T = base.training.seq_len;
    const int accum = base.grad_accum_steps();

    // Everything that can fail on bad input is checked before the run folder is touched.
    const Tokenizer tokenizer = Tokenizer::load(base.model.tokenizer);
    const TrainingData data = open_training_data(
        base.training.dataset, tokenizer, base.validation.split, base.training.dataset_registry);
    // One model for every sweep: each starts from the same freshly initialised weights.
    const std::unique_ptr<LanguageModel> model_ptr =
        base.training.device == "cuda" ? make_cuda_model(base, tokenizer.vocab_size(), B, T)
                                       : make_job_model(base, tokenizer.vocab_size(), B, T);
    LanguageModel& model = *model_ptr;
    std::vector<double> base_lrs;
    for (const auto& cfg : cfgs) {
        const OptimizerInfo& info = optimizer_info(cfg.optimizer.name);
        const double lr = Hyper("optimizer", info.keys, cfg.optimizer.hyper).num("lr");
        if (!(lr > 0.0))
            fail(
                "optimizer.lr = {} ({}): lr-find needs lr > 0, the other parameter groups' "
                "learning rates scale with the swept lr by their ratio to it",
                lr, cfg.optimizer.name);
        base_lrs.push_back(lr);
    }

    // One lr-find call per folder; re-running the same call continues it.
    LrFindSummary summary;
    const fs::path run = fs::path(base.job.dump_folder) / base.job.name;
    summary.run_dir = run.string();
    nlohmann::json call = sweep_options_json(opt.sweep);
    call["format"] = "agpt lr-find";
    call["version"] = 1;
    call["config"] = common;
    const fs::path call_path = run / "lr_find_call.json";
    if (fs::exists(run) && fs::exists(call_path)) {
        const nlohmann::json before = read_json(call_path);
        if (before != call) {
            std::string what;
            for (const auto& [k, v] : call.items())
                if (!before.contains(k) || before[k] != v) what += (what.empty() ? "" : ", ") + k;
            fail(
                "{}: holds an lr-find with other settings (differs in: {}); use another "
                "--job.name or move the folder away",
                run.string(), what);
        }
    } else {
        create_run_dir(base);
        write_text_atomically(call_path, call.dump(2) + "\n");
    }
    ProgressLog log(progress, run / "lr_find.log");
    log.line(
        "lr-find {} | data {} ({} train tokens) | model {}/{} {:.2f}M params | batch {}×{}"
        " × {} | {} threads",
        run.string(), data.source, data.train.total(), base.model.name, base.model.flavor,
        static_cast<double>(model.num_params()) / 1e6, B, T, accum, threads);
    log.line("sweep lr {:.3g} → {:.3g} over {} steps, EMA β {}, stop at smoothed > {}× best",
             opt.sweep.lr_min, opt.sweep.lr_max, opt.sweep.steps, opt.sweep.beta,
             opt.sweep.divergence_factor);

    int steps_this_call = 0;
    bool paused = false;
    const long tokens_per_step = static_cast<long>(B) * T * accum;
    for (std::size_t k = 0; k < cfgs.size() && !paused; k++) {
        const JobConfig& cfg = cfgs[k];
        const std::string& name = cfg.optimizer.name;
        const std::string own = optimizer_toml(cfg);
        LrFindResult result;
        result.optimizer = name;
        result.csv = (run / ("lr_find_" + name + ".csv")).string();
        result.json = (run / ("lr_find_" + name + ".json")).string();
        const fs::path state_root = run / ("lr_find_state_" + name);

        if (fs::exists(result.json)) {
            const nlohmann::json done = read_json(result.json);
            if (string_field(done, "optimizer_config") != own)
                fail(
                    "{}: was swept with another [optimizer] config; use another --job.name or "
                    "move the file away",
                    result.json);
            result.sweep = sweep_from_json(done, result.json);
            result.suggestions = suggest_lrs(result.sweep.points);
            result.reused = true;
            log.line("{}: finished earlier ({}), not re-run", name, result.json);
            summary.results.push_back(std::move(result));
            continue;
        }

        model.init_weights(cfg.model.init, static_cast<uint64_t>(cfg.training.seed));
        if (!cfg.checkpoint.initial_load_path.empty())
            load_model_weights(cfg.checkpoint.initial_load_path, model);
        const std::unique_ptr<Optimizer> optimizer = cfg.training.device == "cuda"
                                                         ? make_cuda_optimizer(cfg, model)
                                                         : make_model_optimizer(cfg, model);
        WindowLoader loader(data.train.sizes, data.train.read, T,
                            static_cast<uint64_t>(cfg.training.seed));
        std::vector<int32_t> step_inputs(static_cast<std::size_t>(B) * T * accum),
            targets(static_cast<std::size_t>(B) * T);
        int current_step = 0;
        if (optimizer->needs_hessian_hook())
            optimizer->set_hessian_hook([&] {
                gauss_newton_bartlett(model, step_inputs.data(), B, T, accum, cfg.training.max_norm,
                                      static_cast<uint64_t>(cfg.training.seed), current_step);
            });

        // Continue from the last save of an interrupted sweep.
        const CheckpointStore store(state_root.string());
        LrSweep& sweep = result.sweep;
        if (!store.steps().empty()) {
            const auto state = store.load_latest(
                -1, model, optimizer.get(), [&](const auto& w) { log.line("{}: {}", name, w); });
            optimizer->train_mode();
            if (!state)
                fail(
                    "{}: no save of this sweep could be loaded; move the folder away to restart "
                    "the {} sweep",
                    state_root.string(), name);
            {
                const fs::path sweep_file = state_root / fmt::format("sweep-{}.json", state->step);
                const nlohmann::json saved = read_json(sweep_file);
                if (string_field(saved, "optimizer_config") != own)
                    fail(
                        "{}: was saved with another [optimizer] config; move {} away to restart "
                        "this sweep",
                        sweep_file.string(), state_root.string());
                sweep = sweep_from_json(saved, sweep_file.string());
                if (static_cast<int>(sweep.points.size()) != state->step)
                    fail("{}: holds {} points for a save at step {}", sweep_file.string(),
                         sweep.points.size(), state->step);
                loader.restore(state->loader_epoch, state->loader_position);
                log.line("{}: resumed at step {} from {}", name, state->step,
                         store.path_of(state->step));
            }
        }

        const double base_lr = base_lrs[k];
        auto step_fn = [&](int step, double lr) -> LrStepResult {
            double loss_sum = 0.0;
            model.zero_grad();
            for (int micro = 0; micro < accum; micro++) {
                int32_t* inputs = step_inputs.data() + static_cast<long>(micro) * B * T;
                loader.next_batch(B, inputs, targets.data());
                loss_sum += model.forward_backward(inputs, targets.data(), B, T,
                                                   1.0 / static_cast<double>(tokens_per_step));
            }
            const double loss = loss_sum / static_cast<double>(tokens_per_step);
            if (!std::isfinite(loss)) return {loss, lr};
            clip_model_gradients(model, cfg.training.max_norm);
            current_step = step + 1;
            // The sweep's value replaces the schedule's factor: nothing else scales the lr here.
            optimizer->step(lr / base_lr);
            model.after_optimizer_step();
            return {loss, optimizer->last_lr()};
        };
        const int log_every = std::max(1, opt.sweep.steps / 20);
        Timer timer;
        int steps_done_here = 0;
        auto after_step = [&](const LrSweep& s) {
            const int n = static_cast<int>(s.points.size());
            steps_this_call++;
            steps_done_here++;
            if (!s.points.empty() && (n % log_every == 0 || s.done() || n == 1)) {
                const auto& p = s.points.back();
                log.line(
                    "{} step {:>4}/{} | lr {:.3e} | loss {:.4f} | smoothed {:.4f} | {:.2f} "
                    "s/step",
                    name, n, opt.sweep.steps, p.lr, p.loss, p.smoothed,
                    timer.seconds() / steps_done_here);
            }
            if (opt.save_every > 0 && !s.done() && n % opt.save_every == 0) {
                nlohmann::json saved = {{"optimizer_config", own}, {"sweep", sweep_to_json(s)}};
                fs::create_directories(state_root);
                write_text_atomically(state_root / fmt::format("sweep-{}.json", n),
                                      saved.dump() + "\n");
                write_text_atomically(result.csv, sweep_csv(s));
                store.save({n, loader.epoch(), loader.position()}, model, optimizer.get(),
                           job_config_to_toml(cfg));
                store.prune(1);
                for (const auto& entry : fs::directory_iterator(state_root)) {
                    const std::string file = entry.path().filename().string();
                    if (file.starts_with("sweep-") && file != fmt::format("sweep-{}.json", n))
                        fs::remove(entry.path());
                }
            }
            return opt.stop_after_steps < 0 || steps_this_call < opt.stop_after_steps;
        };
        if (!sweep.done()) run_lr_sweep(opt.sweep, sweep, step_fn, after_step);
        if (!sweep.done()) {
            paused = true;
            log.line("{}: stopped at step {}; run the same command again to continue", name,
                     sweep.points.size());
            summary.results.push_back(std::move(result));
            break;
        }
        // Checked here, not trusted: a schedule or an optimizer that rescaled the lr would
        // make the curve's x axis wrong.
        for (const auto& p : sweep.points)
            if (!(std::fabs(p.applied_lr - p.lr) <= 1e-9 * p.lr))
                fail("{}: step {} swept lr {} but the optimizer used {}", name, p.step, p.lr,
                     p.applied_lr);
        result.suggestions = suggest_lrs(sweep.points);
        write_text_atomically(result.csv, sweep_csv(sweep));
        nlohmann::json out = sweep_options_json(opt.sweep);
        out["optimizer"] = name;
        out["optimizer_config"] = own;
        out["stop"] = lr_sweep_stop_name(sweep.stop);
        out["suggestions"] = suggestions_json(result.suggestions);
        out["sweep"] = sweep_to_json(sweep);
        write_text_atomically(result.json, out.dump(2) + "\n");
        fs::remove_all(state_root);
        const auto& s = result.suggestions;
        log.line("{}: {} after {} steps | steepest {} | min/10 {} | blow-up/10 {} (blow-ups: {})",
                 name, lr_sweep_stop_name(sweep.stop), sweep.points.size(), format_lr(s.steepest),
                 format_lr(s.min_div10), format_lr(s.blow_up_div10),
                 s.blow_ups.empty() ? std::string("none")
                                    : fmt::format("{:.3g}", fmt::join(s.blow_ups, ", ")));
        summary.results.push_back(std::move(result));
    }
    if (paused) return summary;

    std::vector<Series> series;
    for (const auto& r : summary.results) {
        Series s;
        s.label = r.optimizer;
        for (const auto& p : r.sweep.points) {
            s.x.push_back(p.lr);
            s.y.push_back(p.smoothed);
            s.y_light.push_back(p.loss);
        }
        auto mark = [&](const std::optional<double>& lr, const std::string& label) {
            if (lr && std::isfinite(smoothed_at(r.sweep.points, *lr)))
                s.markers.push_back(
                    {*lr, smoothed_at(r.sweep.points, *lr), fmt::format("{} {:.2g}", label, *lr)});
        };
        mark(r.suggestions.steepest, "steep");
        mark(r.suggestions.min_div10, "min/10");
        mark(r.suggestions.blow_up_div10, "blow-up/10");
        series.push_back(std::move(s));
    }
    PlotOptions plot;
    plot.out = (run / "lr_find.png").string();
    plot.metric = fmt::format("loss: EMA {} (light: raw)", opt.sweep.beta);
    plot.x_label = "learning rate";
    plot.log_x = true;
    plot.title = fmt::format("lr-find: agpt/{}", base.model.flavor);
    plot_series(series, plot);
    summary.plot = plot.out;
    summary.complete = true;
    log.line("plot {}", plot.out);
    return summary;
}

}  // namespace agpt
