#include "tools/dashboard.h"

#include <fcntl.h>
#include <httplib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>

#include "core/error.h"
#include "tools/dashboard_assets.h"
#include "tools/plot.h"

namespace agpt {

namespace fs = std::filesystem;

namespace {

// The flock() locks held on this machine, as "major:minor:inode" of the locked file. Reading
// /proc/locks instead of trying the lock ourselves keeps the dashboard from ever making a
// starting trainer's exclusive lock fail.
std::set<std::string> held_flocks() {
    std::set<std::string> held;
    std::ifstream in("/proc/locks");
    for (std::string line; std::getline(in, line);) {
        std::istringstream fields(line);
        std::string id, kind, mode, access, pid, file;
        fields >> id >> kind;
        if (kind == "->") fields >> kind;  // a waiter on the lock before it
        fields >> mode >> access >> pid >> file;
        if (kind != "FLOCK" || file.empty()) continue;
        // "08:01:1234" with hexadecimal device numbers.
        unsigned major = 0, minor = 0;
        unsigned long long inode = 0;
        if (std::sscanf(file.c_str(), "%x:%x:%llu", &major, &minor, &inode) == 3)
            held.insert(fmt::format("{}:{}:{}", major, minor, inode));
    }
    return held;
}

bool is_locked(const fs::path& lock_file, const std::set<std::string>& held) {
    struct stat st {};
    if (::stat(lock_file.c_str(), &st) != 0) return false;
    return held.count(fmt::format("{}:{}:{}", major(st.st_dev), minor(st.st_dev),
                                  static_cast<unsigned long long>(st.st_ino))) > 0;
}

// How train.log's last session ended: "finished", "preempted" or "failed" (no end line), or
// "unknown" without a log. The end lines are near the file's end (only a sample follows
// "done in"), so the tail is enough however long the run.
std::string status_from_log(const fs::path& log_path) {
    std::ifstream in(log_path, std::ios::binary);
    if (!in) return "unknown";
    constexpr std::streamoff kTail = 256 << 10;
    in.seekg(0, std::ios::end);
    const std::streamoff size = in.tellg();
    const std::streamoff start = std::max<std::streamoff>(0, size - kTail);
    in.seekg(start);
    std::string tail(static_cast<std::size_t>(size - start), '\0');
    in.read(tail.data(), static_cast<std::streamsize>(tail.size()));
    std::string status = "failed";
    std::istringstream lines(tail);
    for (std::string line; std::getline(lines, line);) {
        if (line.starts_with("run ") && line.find(" | data ") != std::string::npos)
            status = "failed";  // a new session began; its end decides
        else if (line.starts_with("done in "))
            status = "finished";
        else if (line.starts_with("stopping at step "))
            status = "preempted";
    }
    return status;
}

std::string status_of(const fs::path& run_dir, const std::set<std::string>& held) {
    if (is_locked(run_dir / ".lock", held)) return "running";
    return status_from_log(run_dir / "train.log");
}

double mtime_unix(const fs::path& p) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) return 0.0;
    return static_cast<double>(st.st_mtim.tv_sec) + 1e-9 * static_cast<double>(st.st_mtim.tv_nsec);
}

void summarize_config(const fs::path& path, DashboardRun& run) {
    if (!fs::exists(path)) return;
    toml::table root;
    try {
        root = toml::parse_file(path.string());
    } catch (const toml::parse_error& e) {
        run.config_error = fmt::format("{}: {}", path.string(), e.description());
        return;
    }
    for (const char* key :
         {"model.name", "model.flavor", "optimizer.name", "optimizer.lr",
          "lr_scheduler.warmup_steps", "training.dataset", "training.local_batch_size",
          "training.seq_len", "training.steps", "job.description"}) {
        const toml::node_view<toml::node> node = root.at_path(key);
        if (auto v = node.value<std::int64_t>(); v && node.is_integer())
            run.config_summary[key] = *v;
        else if (auto d = node.value<double>())
            run.config_summary[key] = *d;
        else if (auto s = node.value<std::string>())
            run.config_summary[key] = *s;
    }
}

std::string file_identity(const struct stat& st) {
    return fmt::format("{}:{}", static_cast<unsigned long long>(st.st_dev),
                       static_cast<unsigned long long>(st.st_ino));
}

// With the charset, httplib does not brotli-compress the reply: at its default quality that took
// minutes for an 8 MiB metrics chunk, and the page is read over loopback anyway.
constexpr const char* kJsonType = "application/json; charset=utf-8";

DashboardReply json_reply(int status, const nlohmann::json& body) {
    return {status, kJsonType, body.dump()};
}

DashboardReply error_reply(int status, const std::string& message) {
    return json_reply(status, {{"error", message}});
}

}  // namespace

std::string run_status(const fs::path& run_dir) {
    return status_of(run_dir, held_flocks());
}

std::vector<DashboardRun> list_runs(const fs::path& runs_dir) {
    std::error_code ec;
    if (!fs::is_directory(runs_dir, ec)) fail("{}: not a folder of runs", runs_dir.string());
    fs::directory_iterator it(runs_dir, ec);
    if (ec) fail("{}: cannot list: {}", runs_dir.string(), ec.message());
    const std::set<std::string> held = held_flocks();
    std::vector<DashboardRun> runs;
    for (const fs::directory_entry& entry : it) {
        const fs::path dir = entry.path();
        if (!entry.is_directory(ec)) continue;
        const bool is_run = fs::exists(dir / "metrics.jsonl") || fs::exists(dir / "config.toml") ||
                            fs::exists(dir / "train.log");
        if (!is_run) continue;
        DashboardRun run;
        run.name = dir.filename().string();
        run.status = status_of(dir, held);
        summarize_config(dir / "config.toml", run);
        run.metrics_bytes = fs::file_size(dir / "metrics.jsonl", ec);
        if (ec) run.metrics_bytes = 0;
        run.updated_unix =
            std::max(mtime_unix(dir / "metrics.jsonl"), mtime_unix(dir / "train.log"));
        runs.push_back(std::move(run));
    }
    std::sort(runs.begin(), runs.end(),
              [](const DashboardRun& a, const DashboardRun& b) { return a.name < b.name; });
    return runs;
}

nlohmann::json to_json(const DashboardRun& run) {
    nlohmann::json j = {{"name", run.name},
                        {"status", run.status},
                        {"config", run.config_summary},
                        {"metrics_bytes", run.metrics_bytes},
                        {"updated_unix", run.updated_unix}};
    if (!run.config_error.empty()) j["config_error"] = run.config_error;
    return j;
}

fs::path resolve_run_dir(const fs::path& runs_dir, const std::string& name) {
    const fs::path as_path(name);
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
        name.find('\0') != std::string::npos || as_path.is_absolute())
        fail("run '{}': not a run name (one folder name inside {})", name, runs_dir.string());
    const fs::path dir = runs_dir / as_path;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) fail("run '{}': no such run in {}", name, runs_dir.string());
    // A symbolic link inside runs_dir may point anywhere; only what lies inside is served.
    const fs::path root = fs::canonical(runs_dir, ec);
    const fs::path real = fs::canonical(dir, ec);
    if (ec || real.parent_path() != root)
        fail("run '{}': resolves outside {}; refused", name, runs_dir.string());
    return dir;
}

MetricsChunk read_metrics_since(const fs::path& run_dir, std::uint64_t offset,
                                const std::string& file_id, std::uint64_t max_bytes) {
    MetricsChunk chunk;
    const fs::path path = run_dir / "metrics.jsonl";
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        chunk.restarted = offset > 0 || !file_id.empty();
        return chunk;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        ::close(fd);
        fail("{}: cannot stat", path.string());
    }
    chunk.file_id = file_identity(st);
    const auto size = static_cast<std::uint64_t>(st.st_size);
    if ((!file_id.empty() && file_id != chunk.file_id) || offset > size) {
        chunk.restarted = true;
        offset = 0;
    }
    const std::uint64_t want = std::min(size - offset, max_bytes);
    std::string bytes(want, '\0');
    std::uint64_t got = 0;
    while (got < want) {
        const ssize_t n =
            ::pread(fd, bytes.data() + got, want - got, static_cast<off_t>(offset + got));
        if (n <= 0) break;  // the file shrank under us: the next poll sees the new one
        got += static_cast<std::uint64_t>(n);
    }
    ::close(fd);
    bytes.resize(got);

    std::size_t consumed = 0;
    for (std::size_t nl; (nl = bytes.find('\n', consumed)) != std::string::npos;
         consumed = nl + 1) {
        const std::string_view line(bytes.data() + consumed, nl - consumed);
        if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
        if (is_metrics_line(line))
            chunk.rows.emplace_back(line);
        else
            chunk.skipped++;
    }
    // A line longer than a whole chunk can never complete within one: count it and move on.
    if (consumed == 0 && got == max_bytes && got > 0) {
        chunk.skipped++;
        consumed = got;
    }
    chunk.next_offset = offset + consumed;
    return chunk;
}

std::string to_json_text(const MetricsChunk& chunk) {
    std::size_t size = 128;
    for (const std::string& row : chunk.rows) size += row.size() + 1;
    std::string out;
    out.reserve(size);
    out += "{\"rows\":[";
    for (std::size_t i = 0; i < chunk.rows.size(); i++) {
        if (i > 0) out += ',';
        out += chunk.rows[i];
    }
    out += fmt::format("],\"next_offset\":{},\"skipped\":{},\"restarted\":{},\"file\":{}}}",
                       chunk.next_offset, chunk.skipped, chunk.restarted,
                       nlohmann::json(chunk.file_id).dump());
    return out;
}

DashboardReply dashboard_reply(const fs::path& runs_dir, const std::string& path,
                               const std::map<std::string, std::string>& params) {
    auto param = [&](const std::string& key) -> const std::string* {
        const auto it = params.find(key);
        return it == params.end() ? nullptr : &it->second;
    };
    try {
        if (path == "/api/runs") {
            nlohmann::json runs = nlohmann::json::array();
            for (const DashboardRun& run : list_runs(runs_dir)) runs.push_back(to_json(run));
            return json_reply(200, {{"runs_dir", runs_dir.string()}, {"runs", runs}});
        }
        if (path == "/api/config" || path == "/api/metrics") {
            const std::string* name = param("run");
            if (!name) return error_reply(400, path + ": missing ?run=NAME");
            fs::path dir;
            try {
                dir = resolve_run_dir(runs_dir, *name);
            } catch (const Error& e) {
                const bool missing =
                    std::string_view(e.what()).find("no such run") != std::string_view::npos;
                return error_reply(missing ? 404 : 400, e.what());
            }
            if (path == "/api/config") {
                std::ifstream in(dir / "config.toml", std::ios::binary);
                if (!in) return error_reply(404, fmt::format("run '{}': no config.toml", *name));
                std::ostringstream text;
                text << in.rdbuf();
                return {200, "text/plain; charset=utf-8", text.str()};
            }
            std::uint64_t offset = 0;
            if (const std::string* o = param("offset")) {
                std::size_t used = 0;
                try {
                    offset = std::stoull(*o, &used);
                } catch (const std::exception&) {
                    used = 0;
                }
                if (used == 0 || used != o->size() || (*o)[0] == '-')
                    return error_reply(400, fmt::format("offset '{}': not a byte offset", *o));
            }
            const std::string* file = param("file");
            return {200, kJsonType,
                    to_json_text(read_metrics_since(dir, offset, file ? *file : ""))};
        }
        const std::string asset_path = path == "/" ? "/index.html" : path;
        for (const EmbeddedFile& f : dashboard_assets())
            if (asset_path == f.path)
                return {200, fmt::format("{}; charset=utf-8", f.content_type),
                        std::string(reinterpret_cast<const char*>(f.data), f.size)};
        return error_reply(404, fmt::format("{}: not found", path));
    } catch (const Error& e) {
        return error_reply(500, e.what());
    }
}

struct DashboardServer::Impl {
    httplib::Server http;
};

DashboardServer::DashboardServer(const DashboardOptions& opt)
    : impl_(std::make_unique<Impl>()), host_(opt.host) {
    const fs::path runs_dir = opt.runs_dir;
    std::error_code ec;
    if (!fs::is_directory(runs_dir, ec)) fail("{}: not a folder of runs", opt.runs_dir);
    if (fs::exists(runs_dir / "metrics.jsonl") || fs::exists(runs_dir / "train.log")) {
        fs::path run = fs::absolute(runs_dir).lexically_normal();
        if (!run.has_filename()) run = run.parent_path();  // "outputs/run_a/"
        fail("{}: is one run's folder; give the folder that holds the runs ({})", opt.runs_dir,
             run.parent_path().string());
    }
    if (opt.port < 0 || opt.port > 65535) fail("--port {}: not a TCP port", opt.port);
    impl_->http.Get(".*", [runs_dir](const httplib::Request& req, httplib::Response& res) {
        std::map<std::string, std::string> params;
        for (const auto& [k, v] : req.params) params.emplace(k, v);
        DashboardReply reply = dashboard_reply(runs_dir, req.path, params);
        res.status = reply.status;
        res.set_header("Cache-Control", "no-store");
        res.set_content(std::move(reply.body), reply.content_type.c_str());
    });
    // httplib's default SO_REUSEPORT would let a second dashboard share a port in use and take
    // half of its requests; SO_REUSEADDR alone still allows a quick restart.
    impl_->http.set_socket_options([](socket_t sock) {
        const int yes = 1;
        ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    if (opt.port == 0) {
        port_ = impl_->http.bind_to_any_port(opt.host);
        if (port_ < 0) fail("{}: cannot listen on any port", opt.host);
    } else {
        if (!impl_->http.bind_to_port(opt.host, opt.port))
            fail("{}:{}: cannot listen (port in use, or no such address)", opt.host, opt.port);
        port_ = opt.port;
    }
}

DashboardServer::~DashboardServer() {
    stop();
}

std::string DashboardServer::url() const {
    const bool v6 = host_.find(':') != std::string::npos;
    return fmt::format("http://{}{}{}:{}/", v6 ? "[" : "", host_, v6 ? "]" : "", port_);
}

void DashboardServer::listen() {
    impl_->http.listen_after_bind();
}

bool DashboardServer::running() const {
    return impl_->http.is_running();
}

void DashboardServer::stop() {
    if (impl_->http.is_running()) impl_->http.stop();
}

}  // namespace agpt
