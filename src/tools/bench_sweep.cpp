#include "tools/bench_sweep.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/text_file.h"
#include "model/model_args.h"
#include "tools/plan.h"
#include "tools/subprocess.h"
#include "tools/toml_overrides.h"
#include "train/cuda_training.h"

namespace agpt {

namespace fs = std::filesystem;

namespace {

std::string cell_label(const ConfigOverrides& o) {
    std::string s;
    for (const auto& [k, v] : o) s += fmt::format("{}{}={}", s.empty() ? "" : " ", k, v);
    return s.empty() ? "(base)" : s;
}

// The value of `key` in the cell, else in the base; "" when neither sets it.
std::string value_of(const Sweep& s, const ConfigOverrides& cell, const std::string& key) {
    for (auto it = cell.rbegin(); it != cell.rend(); ++it)
        if (it->first == key) return it->second;
    for (auto it = s.base.rbegin(); it != s.base.rend(); ++it)
        if (it->first == key) return it->second;
    return "";
}

// The columns that tell cells apart: the grid's axes, then keys only [[cell]]s set.
std::vector<std::string> label_columns(const Sweep& s) {
    std::vector<std::string> cols = s.axes;
    for (const auto& cell : s.cells)
        for (const auto& [k, v] : cell)
            if (std::find(cols.begin(), cols.end(), k) == cols.end()) cols.push_back(k);
    return cols;
}

// Ok cells by tok/s (descending), then the others in sweep order.
std::vector<const SweepCell*> leaderboard_order(const std::vector<SweepCell>& cells) {
    std::vector<const SweepCell*> ok, bad;
    for (const auto& c : cells) (c.status == CellStatus::Ok ? ok : bad).push_back(&c);
    std::stable_sort(ok.begin(), ok.end(), [](const SweepCell* a, const SweepCell* b) {
        return a->result["tok_per_s"].get<double>() > b->result["tok_per_s"].get<double>();
    });
    ok.insert(ok.end(), bad.begin(), bad.end());
    return ok;
}

}  // namespace

const char* cell_status_name(CellStatus s) {
    switch (s) {
        case CellStatus::Ok:
            return "ok";
        case CellStatus::InvalidConfig:
            return "invalid config";
        case CellStatus::OutOfMemory:
            return "out of memory";
        case CellStatus::Failed:
            return "failed";
    }
    return "?";
}

double available_memory_gib() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    long kib = 0;
    std::string unit;
    while (in >> key >> kib >> unit)
        if (key == "MemAvailable:") return static_cast<double>(kib) / (1024.0 * 1024.0);
    fail("/proc/meminfo: no MemAvailable line");
}

MemoryLimit cell_memory_limit(double max_memory_gib, bool cuda, double host_available_gib,
                              double device_gib) {
    // The CUDA context `agpt plan` leaves out ("not counted: the CUDA context (~500 MiB)").
    constexpr double kCudaContextGib = 0.5;
    if (max_memory_gib > 0) return {max_memory_gib, "max_memory_gib is"};
    if (cuda) {
        if (device_gib <= 0) return {};
        return {device_gib - kCudaContextGib, "the GPU holds"};
    }
    return {host_available_gib, "available"};
}

Sweep load_sweep(const std::string& path, const ConfigOverrides& extra) {
    const toml::table root = parse_toml_file(path);
    Sweep s;
    s.path = path;
    s.name = fs::path(path).stem().string();
    std::vector<std::pair<std::string, std::vector<std::string>>> grid;
    for (const auto& [k, node] : root) {
        const std::string key(k.str());
        if (key == "description") {
            if (!node.is_string()) fail("{}: 'description' must be a string", path);
            s.description = node.as_string()->get();
        } else if (key == "steps" || key == "warmup") {
            const auto v = node.as_integer();
            if (v == nullptr || v->get() < (key == "steps" ? 1 : 0))
                fail("{}: '{}' must be an integer {}", path, key, key == "steps" ? ">= 1" : ">= 0");
            (key == "steps" ? s.steps : s.warmup) = static_cast<int>(v->get());
        } else if (key == "max_memory_gib") {
            const auto v = node.value<double>();
            if (!v || !(*v > 0)) fail("{}: 'max_memory_gib' must be a positive number", path);
            s.max_memory_gib = *v;
        } else if (key == "base") {
            if (!node.is_table()) fail("{}: 'base' must be a table of config overrides", path);
            s.base = overrides_from_table(*node.as_table(), path + ": [base]");
        } else if (key == "grid") {
            const toml::table* t = node.as_table();
            if (t == nullptr) fail("{}: 'grid' must be a table of key = [values]", path);
            std::vector<std::pair<toml::source_position, std::string>> order;
            for (const auto& [gk, gv] : *t) {
                const std::string name(gk.str());
                const toml::array* values = gv.as_array();
                if (values == nullptr || values->empty())
                    fail("{}: [grid] '{}' must be a non-empty array of values", path, name);
                std::vector<std::string> texts;
                for (const auto& v : *values)
                    texts.push_back(
                        toml_scalar_text(v, fmt::format("{}: [grid] '{}'", path, name)));
                grid.emplace_back(name, std::move(texts));
                order.emplace_back(gv.source().begin, name);
            }
            // Axes in file order (toml++ keeps tables sorted by key).
            std::sort(grid.begin(), grid.end(), [&](const auto& a, const auto& b) {
                auto pos = [&](const std::string& n) {
                    for (const auto& [p, name] : order)
                        if (name == n) return p;
                    return toml::source_position{};
                };
                const auto pa = pos(a.first), pb = pos(b.first);
                return pa.line != pb.line ? pa.line < pb.line : pa.column < pb.column;
            });
        } else if (key == "cell") {
            const toml::array* arr = node.as_array();
            if (arr == nullptr || !arr->is_array_of_tables())
                fail("{}: 'cell' must be an array of tables ([[cell]])", path);
            for (const auto& c : *arr)
                s.cells.push_back(overrides_from_table(
                    *c.as_table(), fmt::format("{}: [[cell]] at line {}", path,
                                               c.as_table()->source().begin.line)));
        } else {
            fail(
                "{}: unknown key '{}' (expected description, steps, warmup, max_memory_gib, "
                "[base], [grid] and [[cell]])",
                path, key);
        }
    }
    s.base.insert(s.base.end(), extra.begin(), extra.end());
    std::vector<ConfigOverrides> product;
    if (!grid.empty()) {
        product.push_back({});
        for (const auto& [name, values] : grid) {
            s.axes.push_back(name);
            std::vector<ConfigOverrides> next;
            for (const auto& partial : product)
                for (const auto& v : values) {
                    ConfigOverrides o = partial;
                    o.emplace_back(name, v);
                    next.push_back(std::move(o));
                }
            product = std::move(next);
        }
    }
    product.insert(product.end(), s.cells.begin(), s.cells.end());
    s.cells = std::move(product);
    if (s.cells.empty()) fail("{}: no cells: give a [grid] or [[cell]] tables", path);
    return s;
}

std::vector<SweepCell> run_sweep(const Sweep& s, const std::string& agpt_exe, std::FILE* progress) {
    std::vector<SweepCell> out;
    const int n = static_cast<int>(s.cells.size());
    for (int i = 0; i < n; i++) {
        SweepCell c;
        c.overrides = s.cells[i];
        ConfigOverrides all = s.base;
        all.insert(all.end(), c.overrides.begin(), c.overrides.end());
        const std::string label = fmt::format("[{}/{}] {}", i + 1, n, cell_label(c.overrides));
        try {
            const JobConfig cfg = load_job_config("", all);
            // `agpt bench` builds the flavor with its own vocabulary, not the tokenizer's.
            const int vocab = resolve_model_args(cfg.model.flavor, cfg.model.switches()).vocab_size;
            c.plan_gib = static_cast<double>(plan_memory(cfg, 0, vocab).total_bytes) / (1u << 30);
            const bool cuda = cfg.training.device == "cuda";
            const MemoryLimit limit =
                cell_memory_limit(s.max_memory_gib, cuda, cuda ? 0.0 : available_memory_gib(),
                                  cuda && s.max_memory_gib <= 0 ? cuda_device_memory_gib() : 0.0);
            if (limit.gib > 0 && c.plan_gib > limit.gib) {
                c.status = CellStatus::OutOfMemory;
                c.error = fmt::format("needs {:.2f} GiB, {} {:.2f} GiB", c.plan_gib, limit.what,
                                      limit.gib);
            }
        } catch (const Error& e) {
            c.status = CellStatus::InvalidConfig;
            c.error = e.what();
        }
        if (c.status == CellStatus::Ok) {
            fmt::print(progress, "{}: timing ({} GiB planned) ...\n", label,
                       fmt::format("{:.2f}", c.plan_gib));
            std::fflush(progress);
            std::vector<std::string> argv = {agpt_exe,   "bench",
                                             "--steps",  std::to_string(s.steps),
                                             "--warmup", std::to_string(s.warmup)};
            for (const auto& [k, v] : all) {
                argv.push_back("--" + k);
                argv.push_back(v);
            }
            const ProcessResult r = run_process(argv);
            c.seconds = r.seconds;
            if (!r.ok()) {
                c.status = CellStatus::Failed;
                c.error = r.failure_line();
            } else {
                // The bench prints one JSON object as its last stdout line.
                std::string last;
                for (std::size_t a = 0, b; a < r.out.size(); a = b + 1) {
                    b = r.out.find('\n', a);
                    if (b == std::string::npos) b = r.out.size();
                    if (b > a) last = r.out.substr(a, b - a);
                }
                try {
                    c.result = nlohmann::json::parse(last);
                    if (!c.result.is_object() || !c.result.contains("tok_per_s"))
                        throw std::runtime_error("no tok_per_s");
                } catch (const std::exception&) {
                    c.status = CellStatus::Failed;
                    c.error = fmt::format("unreadable bench output: '{}'", last);
                    c.result = nullptr;
                }
            }
        }
        if (c.status == CellStatus::Ok)
            fmt::print(progress, "{}: {:.0f} tok/s, {:.1f} ms/step, {:.2f} GiB peak\n", label,
                       c.result["tok_per_s"].get<double>(),
                       1e3 * c.result["step_time_s"].get<double>(),
                       c.result["peak_rss_gib"].get<double>());
        else
            fmt::print(progress, "{}: {}: {}\n", label, cell_status_name(c.status), c.error);
        std::fflush(progress);
        out.push_back(std::move(c));
    }
    return out;
}

std::string sweep_markdown(const Sweep& s, const std::vector<SweepCell>& cells) {
    const std::vector<std::string> cols = label_columns(s);
    std::vector<const SweepCell*> ok, bad;
    for (const SweepCell* c : leaderboard_order(cells))
        (c->status == CellStatus::Ok ? ok : bad).push_back(c);
    std::string md = fmt::format("# Benchmark sweep: {}\n\n", s.name);
    if (!s.description.empty()) md += s.description + "\n\n";
    md += fmt::format(
        "`agpt bench --sweep {}`: each cell in a fresh `agpt bench` process, median of {} timed "
        "steps (warm-up: {}), synthetic tokens. Sorted by tokens per second.\n\n",
        s.path, s.steps, s.warmup);
    std::string head = "| rank |", rule = "| ---: |";
    for (const auto& c : cols) {
        head += fmt::format(" {} |", c);
        rule += " --- |";
    }
    md += head + " tok/s | TFLOP/s | MFU % | step ms | peak RSS GiB | plan GiB |\n";
    md += rule + " ---: | ---: | ---: | ---: | ---: | ---: |\n";
    int rank = 1;
    for (const SweepCell* c : ok) {
        std::string row = fmt::format("| {} |", rank++);
        for (const auto& col : cols) row += fmt::format(" {} |", value_of(s, c->overrides, col));
        const auto& r = c->result;
        row += fmt::format(" {:.0f} | {:.4f} | {:.2f} | {:.1f} | {:.3f} | {:.3f} |\n",
                           r["tok_per_s"].get<double>(), r["tflops"].get<double>(),
                           r["mfu"].get<double>(), 1e3 * r["step_time_s"].get<double>(),
                           r["peak_rss_gib"].get<double>(), c->plan_gib);
        md += row;
    }
    if (!bad.empty()) {
        md +=
            "\nCells that did not run or failed:\n\n| cell | status | reason |\n| --- | --- | --- "
            "|\n";
        for (const SweepCell* c : bad) {
            std::string reason = c->error;
            std::replace(reason.begin(), reason.end(), '|', '/');
            md += fmt::format("| {} | {} | {} |\n", cell_label(c->overrides),
                              cell_status_name(c->status), reason);
        }
    }
    if (!ok.empty() && ok.front()->result.contains("gemm_peak_tflops"))
        md += fmt::format(
            "\nMFU divides by the measured fp32 GEMM throughput of this machine ({:.3f} TFLOP/s "
            "in the leader's process).\n",
            ok.front()->result["gemm_peak_tflops"].get<double>());
    return md;
}

nlohmann::json sweep_json(const Sweep& s, const std::vector<SweepCell>& cells) {
    nlohmann::json arr = nlohmann::json::array();
    int rank = 0;
    for (const SweepCell* c : leaderboard_order(cells)) {
        nlohmann::json cfg = nlohmann::json::object();
        for (const auto& [k, v] : c->overrides) cfg[k] = v;
        arr.push_back({{"rank", c->status == CellStatus::Ok ? nlohmann::json(++rank) : nullptr},
                       {"config", cfg},
                       {"status", cell_status_name(c->status)},
                       {"error", c->error},
                       {"plan_gib", c->plan_gib},
                       {"seconds", c->seconds},
                       {"result", c->result}});
    }
    nlohmann::json base = nlohmann::json::object();
    for (const auto& [k, v] : s.base) base[k] = v;
    return {{"sweep", s.name},    {"file", s.path}, {"steps", s.steps},
            {"warmup", s.warmup}, {"base", base},   {"cells", arr}};
}

void write_sweep_leaderboard(const Sweep& s, const std::vector<SweepCell>& cells,
                             const std::string& dir) {
    fs::create_directories(dir);
    write_text_atomically((fs::path(dir) / "leaderboard.md").string(), sweep_markdown(s, cells));
    write_text_atomically((fs::path(dir) / "leaderboard.json").string(),
                          sweep_json(s, cells).dump(2) + "\n");
}

}  // namespace agpt
