#include "tools/scale.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/error.h"
#include "dist/launcher.h"
#include "model/model_args.h"
#include "tools/plot.h"
#include "train/config.h"

namespace agpt {

namespace fs = std::filesystem;

double all_reduce_seconds(double bytes, int p, const LinkModel& link) {
    if (p <= 1 || bytes <= 0) return 0.0;
    return 2.0 * (p - 1) * link.latency_us * 1e-6 +
           2.0 * (p - 1) / p * bytes / link.bytes_per_second();
}

double reduce_scatter_seconds(double bytes, int p, const LinkModel& link) {
    if (p <= 1 || bytes <= 0) return 0.0;
    return (p - 1) * link.latency_us * 1e-6 + double(p - 1) / p * bytes / link.bytes_per_second();
}

double all_to_all_seconds(double bytes, int p, const LinkModel& link) {
    return reduce_scatter_seconds(bytes, p, link);
}

std::vector<ProjectedPoint> project_scaling(double compute_s, const ProjectionJob& job,
                                            const std::vector<int>& nodes, const LinkModel& link,
                                            const ProjectionModel& model) {
    if (nodes.empty()) fail("scale: --nodes is empty");
    if (compute_s <= 0) fail("scale: compute time per step {} s must be positive", compute_s);
    for (const auto& [what, l] : {std::pair{"--link-gbps / --latency-us", link},
                                  std::pair{"--intra-gbps / --intra-latency-us", model.intra_node}})
        if (!(l.gbps > 0) || !(l.latency_us >= 0))
            fail("scale: {} {} / {} must be positive / not negative", what, l.gbps, l.latency_us);
    const int tp = job.tensor_parallel, ep = job.expert_parallel;
    if (tp < 1 || ep < 1)
        fail("scale: parallelism degrees TP {} and EP {} must be positive", tp, ep);
    if (ep > 1 && job.n_moe_layers == 0)
        fail("scale: parallelism.expert_parallel_degree = {} needs a MoE flavor", ep);
    const double activation = job.tokens_per_step * job.dim * model.activation_bytes;
    const double tp_s =
        (4.0 * job.n_layers + 1) * all_reduce_seconds(activation, tp, model.intra_node);
    const double ep_s =
        4.0 * job.n_moe_layers * all_to_all_seconds(activation * job.top_k, ep, link);
    std::vector<ProjectedPoint> out;
    for (int p : nodes) {
        if (p < 1) fail("scale: --nodes has {}; node counts must be positive", p);
        if (p % ep != 0)
            fail(
                "scale: --nodes has {}, not a multiple of expert_parallel_degree {} (nodes per "
                "expert group)",
                p, ep);
        ProjectedPoint s;
        s.nodes = p;
        s.dp_s = all_reduce_seconds(job.dense_gradient_bytes, p, link) +
                 all_reduce_seconds(job.expert_gradient_bytes / ep, p / ep, link);
        s.dp_exposed_s =
            model.overlap ? std::max(0.0, s.dp_s - model.backward_fraction * compute_s) : s.dp_s;
        s.tp_s = tp_s;
        s.ep_s = ep_s;
        s.step_s = compute_s + tp_s + ep_s + s.dp_exposed_s;
        s.tok_per_s_per_node = job.tokens_per_step / s.step_s;
        out.push_back(s);
    }
    const double base = std::min_element(out.begin(), out.end(), [](auto& a, auto& b) {
                            return a.nodes < b.nodes;
                        })->step_s;
    for (auto& s : out) s.efficiency = base / s.step_s;
    return out;
}

std::string projection_table(const std::vector<ProjectedPoint>& points) {
    std::string t =
        "| nodes | tok/s per node | step s | DP all-reduce s | exposed s | TP s | EP s | "
        "efficiency |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n";
    for (const auto& p : points)
        t += fmt::format("| {} | {:.0f} | {:.4f} | {:.4f} | {:.4f} | {:.4f} | {:.4f} | {:.1f}% |\n",
                         p.nodes, p.tok_per_s_per_node, p.step_s, p.dp_s, p.dp_exposed_s, p.tp_s,
                         p.ep_s, 100.0 * p.efficiency);
    return t;
}

std::string scale_table(const std::vector<ScalePoint>& points) {
    std::string t =
        "| ranks | tok/s total | tok/s per rank | step s | efficiency |\n"
        "| --- | --- | --- | --- | --- |\n";
    for (const auto& p : points)
        t +=
            fmt::format("| {} | {:.0f} | {:.0f} | {:.4f} | {:.1f}% |\n", p.ranks, p.tok_per_s_total,
                        p.tok_per_s_per_rank, p.step_time_s, 100.0 * p.efficiency);
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
    std::ofstream(fs::path(o.out_dir) / "scale.md") << scale_table(points);
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

ProjectionJob projection_job_of(const std::vector<std::string>& cmd) {
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
    const ModelArgs a = resolve_model_args(cfg.model.flavor, cfg.model.switches());
    ProjectionJob job;
    const double experts = static_cast<double>(a.n_moe_layers()) * a.n_experts * a.expert_params();
    job.expert_gradient_bytes = 4.0 * experts;
    job.dense_gradient_bytes =
        4.0 * static_cast<double>(a.num_params()) - job.expert_gradient_bytes;
    job.n_layers = a.n_layers;
    job.n_moe_layers = a.n_moe_layers();
    job.dim = a.dim;
    job.top_k = a.top_k;
    job.tokens_per_step = static_cast<double>(cfg.training.local_batch_size) *
                          cfg.training.seq_len * cfg.grad_accum_steps(1);
    job.tensor_parallel = cfg.parallelism.tensor_parallel_degree;
    job.expert_parallel = cfg.parallelism.expert_parallel_degree;
    return job;
}

std::string scale_report(const ScaleOptions& o, std::FILE* progress) {
    if (o.ranks.empty() && !o.project) fail("scale: give --ranks, --project, or both");
    std::string out;
    std::vector<ScalePoint> measured;
    if (!o.ranks.empty()) {
        measured = run_scale_study(o, progress);
        out += fmt::format("{} scaling, measured ({}/scale.md, scale.png):\n\n{}", o.mode,
                           o.out_dir, scale_table(measured));
    }
    if (o.project) {
        double compute = o.compute_s;
        if (compute <= 0) {
            if (measured.empty()) fail("scale: --project without --ranks needs --step-time");
            compute = std::min_element(measured.begin(), measured.end(), [](auto& a, auto& b) {
                          return a.ranks < b.ranks;
                      })->step_time_s;
        }
        const ProjectionJob job = projection_job_of(o.command);
        const auto projected = project_scaling(compute, job, o.nodes, o.link, o.projection);
        out += fmt::format(
            "{}projected weak scaling: compute {:.4f} s/step per node ({:.0f} tokens), fp32 "
            "gradients {:.3f} GB dense + {:.3f} GB routed experts, TP {} inside a node ({} "
            "Gbit/s, {} us), EP {} nodes, links {} Gbit/s per node, latency {} us, all-reduce "
            "{}:\n\n{}",
            out.empty() ? "" : "\n", compute, job.tokens_per_step, job.dense_gradient_bytes / 1e9,
            job.expert_gradient_bytes / 1e9, job.tensor_parallel, o.projection.intra_node.gbps,
            o.projection.intra_node.latency_us, job.expert_parallel, o.link.gbps, o.link.latency_us,
            o.projection.overlap ? "overlapped with backward" : "after backward",
            projection_table(projected));
    }
    return out;
}

}  // namespace agpt
