#include "tools/scale.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "dist/launcher.h"
#include "model/model_args.h"
#include "tools/plot.h"
#include "train/config.h"

namespace agpt {

namespace fs = std::filesystem;

double all_reduce_seconds(double bytes, int p, const LinkModel& link) {
    if (p <= 1) return 0.0;
    return 2.0 * (p - 1) * link.latency_us * 1e-6 +
           2.0 * (p - 1) / p * bytes / link.bytes_per_second();
}

double reduce_scatter_seconds(double bytes, int p, const LinkModel& link) {
    if (p <= 1) return 0.0;
    return (p - 1) * link.latency_us * 1e-6 + double(p - 1) / p * bytes / link.bytes_per_second();
}

double all_to_all_seconds(double bytes, int p, const LinkModel& link) {
    return reduce_scatter_seconds(bytes, p, link);
}

std::vector<ScalePoint> project_weak_scaling(double compute_s, double gradient_bytes,
                                             const std::vector<int>& nodes, const LinkModel& link) {
    if (nodes.empty()) fail("scale: --nodes is empty");
    if (compute_s <= 0) fail("scale: compute time per step {} s must be positive", compute_s);
    if (link.gbps <= 0 || link.latency_us < 0)
        fail("scale: --link-gbps {} must be positive and --latency-us {} not negative", link.gbps,
             link.latency_us);
    std::vector<ScalePoint> out;
    for (int p : nodes) {
        if (p < 1) fail("scale: --nodes has {}; node counts must be positive", p);
        ScalePoint s;
        s.ranks = p;
        s.comm_s = all_reduce_seconds(gradient_bytes, p, link);
        s.step_time_s = compute_s + s.comm_s;
        out.push_back(s);
    }
    const auto smallest = std::min_element(out.begin(), out.end(),
                                           [](auto& a, auto& b) { return a.ranks < b.ranks; });
    const double base = smallest->step_time_s;
    for (auto& s : out) s.efficiency = base / s.step_time_s;
    return out;
}

std::string scale_table(const std::vector<ScalePoint>& points, const std::string& first_column,
                        bool with_comm) {
    std::string t = fmt::format("| {} | tok/s total | tok/s per rank | step s |{} efficiency |\n",
                                first_column, with_comm ? " all-reduce s |" : "");
    t +=
        with_comm ? "| --- | --- | --- | --- | --- | --- |\n" : "| --- | --- | --- | --- | --- |\n";
    for (const auto& p : points) {
        const std::string tok =
            p.tok_per_s_total > 0 ? fmt::format("{:.0f}", p.tok_per_s_total) : std::string("—");
        const std::string per = p.tok_per_s_per_rank > 0
                                    ? fmt::format("{:.0f}", p.tok_per_s_per_rank)
                                    : std::string("—");
        t +=
            fmt::format("| {} | {} | {} | {:.4f} |{} {:.1f}% |\n", p.ranks, tok, per, p.step_time_s,
                        with_comm ? fmt::format(" {:.4f} |", p.comm_s) : "", 100.0 * p.efficiency);
    }
    return t;
}

namespace {

double median(std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The value of --key in a train command line, or "".
std::string option_of(const std::vector<std::string>& cmd, const std::string& key) {
    for (std::size_t i = 0; i + 1 < cmd.size(); i++)
        if (cmd[i] == key) return cmd[i + 1];
    for (const auto& w : cmd)
        if (w.rfind(key + "=", 0) == 0) return w.substr(key.size() + 1);
    return "";
}

}  // namespace

std::vector<ScalePoint> run_scale_study(const ScaleOptions& o, std::FILE* progress) {
    if (o.ranks.empty()) fail("scale: --ranks is empty");
    if (o.mode != "weak" && o.mode != "strong")
        fail("scale: --mode '{}': expected weak or strong", o.mode);
    if (o.command.size() < 2 || o.command[1] != "train")
        fail("scale: the command after '--' must be `agpt train ...`");
    const std::string local_text = option_of(o.command, "--training.local_batch_size");
    const std::string global_text = option_of(o.command, "--training.global_batch_size");
    const int local = local_text.empty() ? 16 : std::stoi(local_text);
    const int most = *std::max_element(o.ranks.begin(), o.ranks.end());
    const int global =
        global_text.empty() || global_text == "-1" ? local * most : std::stoi(global_text);
    if (fs::exists(o.out_dir)) fail("scale: {} already exists; choose another --out", o.out_dir);
    fs::create_directories(o.out_dir);
    std::vector<ScalePoint> points;
    for (int n : o.ranks) {
        if (n < 1) fail("scale: --ranks has {}; rank counts must be positive", n);
        if (o.mode == "strong" && global % n != 0)
            fail("scale: strong scaling of global batch {} over {} ranks does not divide", global,
                 n);
        LaunchOptions launch;
        launch.ranks = n;
        launch.command = o.command;
        const std::string name = fmt::format("{}-{}ranks", o.mode, n);
        const int per_rank = o.mode == "weak" ? local : global / n;
        const int threads =
            o.threads_per_rank > 0 ? o.threads_per_rank : std::max(1, hardware_cores() / n);
        for (const std::string& w :
             {std::string("--job.dump_folder"), fs::absolute(o.out_dir).string(),
              std::string("--job.name"), name, std::string("--training.local_batch_size"),
              std::to_string(per_rank), std::string("--training.global_batch_size"),
              std::to_string(o.mode == "weak" ? local * n : global),
              std::string("--training.threads"), std::to_string(threads)})
            launch.command.push_back(w);
        LaunchPlan plan = plan_launch(launch, current_environment(), hardware_cores());
        // One machine shared by the ranks: OpenMPI needs consent to place more than its slots.
        if (plan.argv.front() == "mpirun")
            plan.argv.insert(plan.argv.begin() + 1, {"--oversubscribe"});
        if (progress) std::fprintf(progress, "scale: %s\n", shell_command(plan.argv).c_str());
        const int rc = run_command(plan.argv);
        if (rc != 0) fail("scale: the {}-rank run exited with status {}", n, rc);
        std::ifstream in(fs::path(o.out_dir) / name / "metrics.jsonl");
        std::vector<double> totals, steps;
        for (std::string line; std::getline(in, line);) {
            const auto row = nlohmann::json::parse(line, nullptr, false);
            if (row.is_discarded() || !row.contains("tok_per_s") || row.value("step", 0) <= 1)
                continue;
            totals.push_back(row.value("tok_per_s_total", row["tok_per_s"].get<double>()));
            steps.push_back(row["step_time_s"].get<double>());
        }
        if (totals.empty())
            fail(
                "scale: {}: no logged steps after the first; raise --training.steps or lower "
                "--metrics.log_freq",
                (fs::path(o.out_dir) / name / "metrics.jsonl").string());
        ScalePoint p;
        p.ranks = n;
        p.tok_per_s_total = median(totals);
        p.tok_per_s_per_rank = p.tok_per_s_total / n;
        p.step_time_s = median(steps);
        points.push_back(p);
    }
    const auto smallest = std::min_element(points.begin(), points.end(),
                                           [](auto& a, auto& b) { return a.ranks < b.ranks; });
    const double base = smallest->tok_per_s_per_rank;
    for (auto& p : points) p.efficiency = p.tok_per_s_per_rank / base;
    std::ofstream(fs::path(o.out_dir) / "scale.md") << scale_table(points, "ranks", false);
    Series eff;
    eff.label = o.mode + " scaling efficiency";
    for (const auto& p : points) {
        eff.x.push_back(p.ranks);
        eff.y.push_back(100.0 * p.efficiency);
    }
    PlotOptions plot;
    plot.metric = "efficiency %";
    plot.out = (fs::path(o.out_dir) / "scale.png").string();
    plot.x_label = "ranks";
    plot_series({eff}, plot);
    return points;
}

double gradient_bytes_of(const std::vector<std::string>& cmd) {
    if (cmd.size() < 2 || cmd[1] != "train")
        fail("scale: the command after '--' must be `agpt train ...`");
    std::vector<std::string> rest;
    std::string config;
    for (std::size_t i = 2; i < cmd.size(); i++) {
        if (cmd[i] == "--config" && i + 1 < cmd.size()) {
            config = cmd[++i];
        } else if (cmd[i].rfind("--config=", 0) == 0) {
            config = cmd[i].substr(9);
        } else {
            rest.push_back(cmd[i]);
        }
    }
    const JobConfig cfg = load_job_config(config, parse_override_args(rest));
    return 4.0 * static_cast<double>(
                     resolve_model_args(cfg.model.flavor, cfg.model.switches()).num_params());
}

std::string scale_report(const ScaleOptions& o, std::FILE* progress) {
    if (o.ranks.empty() && !o.project) fail("scale: give --ranks, --project, or both");
    std::string out;
    std::vector<ScalePoint> measured;
    if (!o.ranks.empty()) {
        measured = run_scale_study(o, progress);
        out += fmt::format("{} scaling, measured ({}/scale.md, scale.png):\n\n{}", o.mode,
                           o.out_dir, scale_table(measured, "ranks", false));
    }
    if (o.project) {
        double compute = o.compute_s;
        if (compute <= 0) {
            if (measured.empty()) fail("scale: --project without --ranks needs --step-time");
            compute = std::min_element(measured.begin(), measured.end(), [](auto& a, auto& b) {
                          return a.ranks < b.ranks;
                      })->step_time_s;
        }
        const double bytes = gradient_bytes_of(o.command);
        const auto projected = project_weak_scaling(compute, bytes, o.nodes, o.link);
        out += fmt::format(
            "{}projected DP weak scaling: compute {:.4f} s/step per node, all-reduce of {:.3f} GB "
            "fp32 gradients, links {} Gbit/s per node, latency {} us:\n\n{}",
            out.empty() ? "" : "\n", compute, bytes / 1e9, o.link.gbps, o.link.latency_us,
            scale_table(projected, "nodes", true));
    }
    return out;
}

}  // namespace agpt
