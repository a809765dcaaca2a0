#include "tools/compete.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/text_file.h"
#include "tools/plot.h"
#include "tools/stats.h"
#include "tools/subprocess.h"
#include "tools/toml_overrides.h"

namespace agpt {

namespace fs = std::filesystem;

namespace {

// Keys the competition sets itself for every run.
const std::set<std::string> kReservedKeys = {"job.name", "job.dump_folder", "training.seed"};

ConfigOverrides competition_overrides(const toml::table& t, const std::string& where,
                                      const std::set<std::string>& skip = {}) {
    ConfigOverrides out = overrides_from_table(t, where, skip);
    for (const auto& kv : out)
        if (kReservedKeys.count(kv.first))
            fail("{}: '{}' is set by the competition for each run and cannot be overridden", where,
                 kv.first);
    return out;
}

bool valid_entry_name(const std::string& name) {
    if (name.empty() || name == "." || name == "..") return false;
    return std::all_of(name.begin(), name.end(), [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' ||
               ch == '.' || ch == '+';
    });
}

// The rows of a run's metrics.jsonl that parse as JSON objects.
std::vector<nlohmann::json> metric_rows(const std::string& run_dir) {
    std::vector<nlohmann::json> rows;
    std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
        try {
            auto row = nlohmann::json::parse(line);
            if (row.is_object() && row.contains("step") && row["step"].is_number())
                rows.push_back(std::move(row));
        } catch (const nlohmann::json::exception&) {
        }
    }
    return rows;
}

// "a b 'c d'": a word that a POSIX shell reads back as the same string.
std::string shell_quote(const std::string& s) {
    const bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) ||
               std::string_view("-_./+=:,@%").find(ch) != std::string_view::npos;
    });
    if (plain) return s;
    std::string q = "'";
    for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    return q + "'";
}

std::string format_mean_std(const EntryResult& e) {
    if (e.final_val_loss.empty()) return "—";
    if (e.final_val_loss.size() < 2) return fmt::format("{:.4f}", e.mean);
    return fmt::format("{:.4f} ± {:.4f}", e.mean, e.std);
}

std::string overrides_markdown(const ConfigOverrides& o) {
    if (o.empty()) return "(none: the base as is)";
    std::vector<std::string> parts;
    for (const auto& [k, v] : o) parts.push_back(fmt::format("`{} = {}`", k, v));
    return fmt::format("{}", fmt::join(parts, ", "));
}

}  // namespace

Competition load_competition(const std::string& path) {
    const toml::table root = parse_toml_file(path);
    Competition c;
    c.path = path;
    c.name = fs::path(path).stem().string();
    for (const auto& [k, node] : root) {
        const std::string key(k.str());
        if (key == "description") {
            if (!node.is_string()) fail("{}: 'description' must be a string", path);
            c.description = node.as_string()->get();
        } else if (key == "seeds") {
            if (!node.is_integer() || node.as_integer()->get() < 1)
                fail("{}: 'seeds' must be a positive integer", path);
            c.seeds = static_cast<int>(node.as_integer()->get());
        } else if (key == "base") {
            if (!node.is_table()) fail("{}: 'base' must be a table of config overrides", path);
            c.base = competition_overrides(*node.as_table(), path + ": [base]");
        } else if (key == "entry") {
            const toml::array* arr = node.as_array();
            if (arr == nullptr || !arr->is_array_of_tables())
                fail("{}: 'entry' must be an array of tables ([[entry]])", path);
            for (const auto& e : *arr) {
                const toml::table& t = *e.as_table();
                const int line = static_cast<int>(t.source().begin.line);
                const auto* name = t.get("name");
                if (name == nullptr || !name->is_string())
                    fail("{}: the [[entry]] at line {} needs a name = \"...\"", path, line);
                CompetitionEntry entry;
                entry.name = name->as_string()->get();
                if (!valid_entry_name(entry.name))
                    fail("{}: entry name '{}' (line {}): use letters, digits and - _ . + only",
                         path, entry.name, line);
                entry.overrides = competition_overrides(
                    t, fmt::format("{}: entry '{}'", path, entry.name), {"name"});
                c.entries.push_back(std::move(entry));
            }
        } else {
            fail("{}: unknown key '{}' (expected description, seeds, [base] and [[entry]])", path,
                 key);
        }
    }
    if (c.entries.empty()) fail("{}: no [[entry]] tables", path);
    std::set<std::string> names;
    for (const auto& e : c.entries)
        if (!names.insert(e.name).second) fail("{}: entry name '{}' is used twice", path, e.name);
    // Every run's config must load before the first run starts.
    try {
        load_job_config("", c.base);
    } catch (const Error& err) {
        fail("{}: [base]: {}", path, err.what());
    }
    for (const auto& e : c.entries) {
        JobConfig cfg;
        try {
            cfg = load_job_config("", run_overrides(c, e, 1, "runs"));
        } catch (const Error& err) {
            fail("{}: entry '{}': {}", path, e.name, err.what());
        }
        if (!cfg.validation.enable)
            fail(
                "{}: entry '{}': validation.enable is false, but entries are ranked by their "
                "final validation loss",
                path, e.name);
    }
    return c;
}

int competition_seeds(const Competition& c, const CompeteOptions& o) {
    return o.seeds > 0 ? o.seeds : c.seeds;
}

std::string competition_out(const Competition& c, const CompeteOptions& o) {
    return o.out.empty() ? (fs::path("runs") / "competitions" / c.name).string() : o.out;
}

ConfigOverrides run_overrides(const Competition& c, const CompetitionEntry& e, int seed,
                              const std::string& out) {
    ConfigOverrides o = c.base;
    o.insert(o.end(), e.overrides.begin(), e.overrides.end());
    o.emplace_back("training.seed", std::to_string(seed));
    o.emplace_back("job.dump_folder", (fs::path(out) / e.name).string());
    o.emplace_back("job.name", "seed" + std::to_string(seed));
    return o;
}

std::string run_folder(const std::string& out, const std::string& entry, int seed) {
    return (fs::path(out) / entry / ("seed" + std::to_string(seed))).string();
}

bool run_finished(const std::string& run_dir, int steps) {
    for (const auto& row : metric_rows(run_dir))
        if (row.contains("val_loss") && row["val_loss"].is_number() &&
            row["step"].get<int>() == steps)
            return true;
    return false;
}

CompeteProgress run_competition(const Competition& c, const CompeteOptions& o,
                                const std::string& agpt_exe, std::FILE* progress) {
    // Checked before the runs, not when the report is written after them.
    if (!(o.confidence > 0 && o.confidence < 1))
        fail("--confidence {}: must be in (0, 1)", o.confidence);
    const std::string out = competition_out(c, o);
    const int seeds = competition_seeds(c, o);
    const int total = static_cast<int>(c.entries.size()) * seeds;
    CompeteProgress p;
    int k = 0;
    for (const auto& e : c.entries)
        for (int s = 1; s <= seeds; s++) {
            k++;
            const ConfigOverrides ov = run_overrides(c, e, s, out);
            const JobConfig cfg = load_job_config("", ov);
            const std::string dir = run_folder(out, e.name, s);
            const std::string label = fmt::format("[{}/{}] {} seed {}", k, total, e.name, s);
            if (run_finished(dir, cfg.training.steps)) {
                p.skipped++;
                fmt::print(progress, "{}: finished earlier, skipped\n", label);
                std::fflush(progress);
                continue;
            }
            if (fs::exists(dir)) {
                // An interrupted run: keep what it wrote, out of the way of the new one.
                std::string aside;
                for (int n = 1;; n++) {
                    aside = fmt::format("{}.incomplete-{}", dir, n);
                    if (!fs::exists(aside)) break;
                }
                fs::rename(dir, aside);
                fmt::print(progress, "{}: unfinished run moved to {}\n", label, aside);
            }
            fs::create_directories(fs::path(dir).parent_path());
            std::vector<std::string> argv = {agpt_exe, "train"};
            for (const auto& [key, value] : ov) {
                argv.push_back("--" + key);
                argv.push_back(value);
            }
            fmt::print(progress, "{}: training ({} steps) ...\n", label, cfg.training.steps);
            std::fflush(progress);
            // The trainer's validation lines show how far a long run has got.
            const ProcessResult r = run_process(argv, "", [&](const std::string& line) {
                if (line.find("| val_loss") == std::string::npos) return;
                fmt::print(progress, "{}: {}\n", label, line);
                std::fflush(progress);
            });
            if (r.ok() && run_finished(dir, cfg.training.steps)) {
                p.ran++;
                double val = std::numeric_limits<double>::quiet_NaN();
                for (const auto& row : metric_rows(dir))
                    if (row.contains("val_loss")) val = row["val_loss"].get<double>();
                fmt::print(progress, "{}: val_loss {:.4f} in {:.0f} s\n", label, val, r.seconds);
            } else {
                p.failed++;
                const std::string why =
                    r.ok() ? std::string("exited 0 but its metrics.jsonl has no final val_loss")
                           : r.failure_line();
                p.failures.push_back(fmt::format("{} seed {}: {}", e.name, s, why));
                fmt::print(progress, "{}: FAILED: {}\n", label, why);
            }
            std::fflush(progress);
        }
    return p;
}

std::map<std::string, std::string> emit_job_scripts(const Competition& c, const CompeteOptions& o,
                                                    const std::string& scheduler,
                                                    const std::string& agpt_exe,
                                                    const std::string& workdir) {
    if (scheduler != "pbs" && scheduler != "slurm")
        fail("--emit {}: expected pbs or slurm", scheduler);
    const std::string out = competition_out(c, o);
    const int seeds = competition_seeds(c, o);
    std::map<std::string, std::string> scripts;
    for (const auto& e : c.entries) {
        const std::string job = c.name + "-" + e.name;
        const std::string log = (fs::path(out) / e.name / (scheduler + "-")).string();
        std::string s = "#!/bin/bash\n";
        if (scheduler == "slurm") {
            s += fmt::format("#SBATCH --job-name={}\n#SBATCH --nodes=1\n", job);
            s += fmt::format("#SBATCH --output={}%j.out\n", log);
        } else {
            s += fmt::format("#PBS -N {}\n#PBS -l select=1\n#PBS -j oe\n", job);
            s += fmt::format("#PBS -o {}$PBS_JOBID.out\n", log);
        }
        s += fmt::format(
            "# Entry '{}' of {}, seeds 1..{}, one after another. When every entry's job is done,\n"
            "# `agpt compete {} --out {}` finds the runs finished and writes the report.\n",
            e.name, c.path, seeds, c.path, out);
        s += fmt::format("cd {}\nmkdir -p {}\n", shell_quote(workdir),
                         shell_quote((fs::path(out) / e.name).string()));
        for (int seed = 1; seed <= seeds; seed++) {
            std::string line = shell_quote(agpt_exe) + " train";
            for (const auto& [key, value] : run_overrides(c, e, seed, out))
                line += " --" + key + " " + shell_quote(value);
            s += line + "\n";
        }
        scripts[e.name + "." + scheduler] = std::move(s);
    }
    return scripts;
}

std::vector<std::string> write_job_scripts(const Competition& c, const CompeteOptions& o,
                                           const std::string& scheduler,
                                           const std::string& agpt_exe,
                                           const std::string& workdir) {
    const auto scripts = emit_job_scripts(c, o, scheduler, agpt_exe, workdir);
    const fs::path out = competition_out(c, o);
    fs::create_directories(out);
    std::vector<std::string> paths;
    for (const auto& [name, text] : scripts) {
        const std::string path = (out / name).string();
        write_text_atomically(path, text);
        fs::permissions(path, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
        paths.push_back(path);
    }
    return paths;
}

void rank_entries(std::vector<EntryResult>& entries, double confidence) {
    if (!(confidence > 0 && confidence < 1)) fail("confidence {}: must be in (0, 1)", confidence);
    for (auto& e : entries) {
        e.mean = e.final_val_loss.empty() ? std::numeric_limits<double>::quiet_NaN()
                                          : mean_of(e.final_val_loss);
        e.std = sample_std(e.final_val_loss);
    }
    std::stable_sort(entries.begin(), entries.end(),
                     [](const EntryResult& a, const EntryResult& b) {
                         if (a.final_val_loss.empty() != b.final_val_loss.empty())
                             return b.final_val_loss.empty();
                         return a.mean < b.mean;
                     });
    if (entries.empty() || entries[0].final_val_loss.empty()) return;
    const EntryResult& leader = entries[0];
    for (std::size_t i = 0; i < entries.size(); i++) {
        EntryResult& e = entries[i];
        e.p_vs_leader = std::numeric_limits<double>::quiet_NaN();
        e.tied_with_leader = i == 0;
        if (i == 0 || e.final_val_loss.size() < 2 || leader.final_val_loss.size() < 2) continue;
        e.p_vs_leader = welch_t_test(e.final_val_loss, leader.final_val_loss).p;
        e.tied_with_leader = e.p_vs_leader >= 1.0 - confidence;
    }
    if (entries[0].final_val_loss.size() >= 2) entries[0].p_vs_leader = 1.0;
}

std::vector<EntryResult> collect_results(const Competition& c, const CompeteOptions& o) {
    const std::string out = competition_out(c, o);
    const int seeds = competition_seeds(c, o);
    std::vector<EntryResult> results;
    for (const auto& e : c.entries) {
        EntryResult r;
        r.name = e.name;
        const JobConfig cfg = load_job_config("", run_overrides(c, e, 1, out));
        std::map<double, std::pair<double, int>> loss, val;
        double tok_sum = 0;
        int tok_n = 0;
        for (int s = 1; s <= seeds; s++) {
            const std::string dir = run_folder(out, e.name, s);
            if (!run_finished(dir, cfg.training.steps)) continue;
            r.seeds.push_back(s);
            double last_val = 0;
            for (const auto& row : metric_rows(dir)) {
                const double step = row["step"].get<double>();
                if (row.contains("val_loss")) {
                    last_val = row["val_loss"].get<double>();
                    auto& [sum, n] = val[step];
                    sum += last_val;
                    n++;
                }
                if (row.contains("loss")) {
                    auto& [sum, n] = loss[step];
                    sum += row["loss"].get<double>();
                    n++;
                }
                // Step 1's window holds the first step alone, with its one-off costs.
                if (row.contains("tok_per_s") && step > 1) {
                    tok_sum += row["tok_per_s"].get<double>();
                    tok_n++;
                }
            }
            r.final_val_loss.push_back(last_val);
        }
        const int n = static_cast<int>(r.seeds.size());
        for (const auto& [step, sn] : loss)
            if (sn.second == n) {
                r.curve_step.push_back(step);
                r.curve_loss.push_back(sn.first / n);
            }
        for (const auto& [step, sn] : val)
            if (sn.second == n) {
                r.val_curve_step.push_back(step);
                r.val_curve_loss.push_back(sn.first / n);
            }
        r.tok_per_s = tok_n > 0 ? tok_sum / tok_n : std::numeric_limits<double>::quiet_NaN();
        results.push_back(std::move(r));
    }
    rank_entries(results, o.confidence);
    return results;
}

std::string leaderboard_markdown(const std::vector<EntryResult>& ranked, double confidence,
                                 int seeds) {
    const double alpha = 1.0 - confidence;
    std::string md;
    if (seeds >= 2)
        md += fmt::format(
            "Ranked by the mean over seeds of the final validation loss (± the sample standard "
            "deviation). **≈** marks an entry that Welch's two-sided t-test at {:g}% confidence "
            "cannot tell from the leader (p ≥ {:g}); p is that test's p-value against the "
            "leader.\n\n",
            100 * confidence, alpha);
    else
        md +=
            "Ranked by the final validation loss. With one seed per entry no test of "
            "significance is possible: differences may be noise.\n\n";
    md +=
        "| rank | entry | final val_loss | seeds | Δ vs leader | p vs leader | ≈ leader | tok/s "
        "|\n";
    md += "| ---: | --- | ---: | ---: | ---: | ---: | :---: | ---: |\n";
    int rank = 0;
    for (const auto& e : ranked) {
        const bool has = !e.final_val_loss.empty();
        const std::string delta = !has        ? "—"
                                  : rank == 0 ? "0"
                                              : fmt::format("{:+.4f}", e.mean - ranked[0].mean);
        const std::string p = std::isnan(e.p_vs_leader) || !has || rank == 0 ? "—"
                              : e.p_vs_leader < 1e-4                         ? std::string("< 1e-4")
                                                     : fmt::format("{:.3g}", e.p_vs_leader);
        const std::string tok =
            std::isnan(e.tok_per_s) || !has ? "—" : fmt::format("{:.0f}", e.tok_per_s);
        md += fmt::format("| {} | {} | {} | {}/{} | {} | {} | {} | {} |\n",
                          has ? std::to_string(rank + 1) : "—", e.name, format_mean_std(e),
                          e.final_val_loss.size(), seeds, delta, p,
                          rank == 0 && has ? "leader" : (e.tied_with_leader ? "≈" : ""), tok);
        if (has) rank++;
    }
    return md;
}

void write_competition_report(const Competition& c, const CompeteOptions& o,
                              const std::vector<EntryResult>& ranked,
                              const CompeteProgress& progress, const std::string& report_dir) {
    fs::create_directories(report_dir);
    const int seeds = competition_seeds(c, o);
    std::vector<Series> loss, val;
    // The first tenth of training (the steep initial drop) would flatten the differences that
    // matter into a few pixels at the bottom; the training-loss plot starts after it.
    double last_step = 0;
    for (const auto& e : ranked)
        if (!e.curve_step.empty()) last_step = std::max(last_step, e.curve_step.back());
    const double first_step = std::max(1.0, std::floor(last_step / 10));
    for (const auto& e : ranked) {
        Series s;
        s.label = e.name;
        for (std::size_t i = 0; i < e.curve_step.size(); i++)
            if (e.curve_step[i] >= first_step) {
                s.x.push_back(e.curve_step[i]);
                s.y.push_back(e.curve_loss[i]);
            }
        if (!s.x.empty()) loss.push_back(std::move(s));
        if (!e.val_curve_step.empty()) {
            Series v;
            v.label = e.name;
            v.x = e.val_curve_step;
            v.y = e.val_curve_loss;
            val.push_back(std::move(v));
        }
    }
    PlotOptions po;
    po.width = 1000;
    po.height = 620;
    if (!loss.empty()) {
        po.metric = "training loss (mean over seeds)";
        po.title = fmt::format("{}: training loss from step {}", c.name, first_step);
        po.out = (fs::path(report_dir) / "loss_curves.png").string();
        plot_series(loss, po);
    }
    if (!val.empty()) {
        po.metric = "val_loss (mean over seeds)";
        po.title = fmt::format("{}: validation loss", c.name);
        po.out = (fs::path(report_dir) / "val_loss_curves.png").string();
        plot_series(val, po);
    }

    std::string md = fmt::format("# Competition: {}\n\n", c.name);
    if (!c.description.empty()) md += c.description + "\n\n";
    md += fmt::format(
        "Produced by `agpt compete {} --seeds {} --out {}`; each run is a fresh `agpt train` "
        "process with training.seed = 1..{}.\n\n",
        c.path, seeds, competition_out(c, o), seeds);
    md += "## Leaderboard\n\n" + leaderboard_markdown(ranked, o.confidence, seeds) + "\n";
    md +=
        "tok/s: the mean of the logged training throughput over the runs' steps (step 1 left "
        "out), measured on this machine while the runs went one after another; other jobs on "
        "the machine lower it.\n\n";
    if (!progress.failures.empty()) {
        md += "## Failed runs\n\n";
        for (const auto& f : progress.failures) md += "- " + f + "\n";
        md += "\n";
    }
    if (!loss.empty()) md += "![training loss](loss_curves.png)\n\n";
    if (!val.empty()) md += "![validation loss](val_loss_curves.png)\n\n";
    md +=
        "## Base\n\nEvery entry starts from the built-in job (`agpt train --print-config`) "
        "with:\n\n| key | value |\n| --- | --- |\n";
    for (const auto& [k, v] : c.base) md += fmt::format("| `{}` | `{}` |\n", k, v);
    md += "\n## Entries\n\nEach entry's overrides, applied on top of the base:\n\n";
    md += "| entry | overrides |\n| --- | --- |\n";
    for (const auto& e : c.entries)
        md += fmt::format("| {} | {} |\n", e.name, overrides_markdown(e.overrides));
    md += "\n";
    write_text_atomically((fs::path(report_dir) / "README.md").string(), md);
}

}  // namespace agpt
