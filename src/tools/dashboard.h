#pragma once
// `agpt dashboard RUNS_DIR`: a read-only local web page over a folder of run folders. It lists
// the runs with their status and config, and draws their metrics.jsonl curves (several runs
// overlaid, EMA smoothing, log axes), updating live while runs append to their metrics.
//
// The page (web/dashboard/) and its chart library (uPlot, from npm) are compiled into the
// binary, so nothing is loaded from the internet when the page is viewed. The page polls
// three JSON endpoints:
//
//   GET /api/runs                                  the runs, their status and a config summary
//   GET /api/config?run=NAME                       the run's config.toml, as text
//   GET /api/metrics?run=NAME&offset=N[&file=ID]   the metrics lines after byte N
//
// Metrics are read incrementally: a reply holds the whole lines after `offset` and the offset to
// ask from next, so a last line still being written (no newline yet) waits for the next poll and
// a complete line that is not a JSON object is skipped and counted. When the file was replaced
// (a resumed run rewrites it) the reply starts over from byte 0 and says so.
//
// Intended usage:
//   DashboardServer server({.runs_dir = "outputs", .port = 8080});
//   std::printf("%s\n", server.url().c_str());
//   server.listen();  // until stop() from another thread, or the process ends
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace agpt {

// What a run folder's files say about it: "running" (a process holds the trainer's .lock),
// "finished" (train.log's last session ended with "done in"), "preempted" (it ended with
// "stopping at step": a signal or the walltime deadline, resumable), "failed" (it ended with
// neither and no process holds the lock: an error or a kill) or "unknown" (no train.log).
std::string run_status(const std::filesystem::path& run_dir);

struct DashboardRun {
    std::string name;    // the folder's name inside RUNS_DIR
    std::string status;  // see run_status
    // A few config.toml keys (model, flavor, optimizer, lr, steps, ...); empty when the run has
    // no config.toml, and then config_error says why when it has one that does not parse.
    nlohmann::json config_summary = nlohmann::json::object();
    std::string config_error;
    std::uintmax_t metrics_bytes = 0;  // size of metrics.jsonl, 0 when it has none
    double updated_unix = 0.0;         // last change to metrics.jsonl or train.log
};

// The run folders directly inside runs_dir (those holding metrics.jsonl, config.toml or
// train.log), sorted by name. Throws Error when runs_dir is not a readable folder.
std::vector<DashboardRun> list_runs(const std::filesystem::path& runs_dir);
nlohmann::json to_json(const DashboardRun& run);

// The folder of run `name` inside runs_dir. Throws Error, naming the run, for a name that is not
// a single plain path component ("", ".", "..", anything with '/' or NUL, an absolute path), for
// a folder that resolves outside runs_dir (a symbolic link out), or for a missing folder.
std::filesystem::path resolve_run_dir(const std::filesystem::path& runs_dir,
                                      const std::string& name);

struct MetricsChunk {
    // The complete lines that are JSON objects, in file order and as written: they are checked,
    // not re-encoded, so the page gets the file's exact digits at the cost of a validation.
    std::vector<std::string> rows;
    std::uint64_t next_offset = 0;  // byte offset just after the last complete line read
    int skipped = 0;                // complete lines that were not JSON objects
    bool restarted = false;         // the file was replaced or shrank: rows start at byte 0
    std::string file_id;            // identity of the file read (device:inode)
};

// The metrics.jsonl lines of run_dir from byte `offset` on, at most max_bytes of them (the rest
// comes with the next call). `file_id` is the one a previous chunk returned ("" on the first
// call): when the file is another one now, or shorter than offset, reading restarts at byte 0.
// A run without metrics.jsonl yet gives an empty chunk.
MetricsChunk read_metrics_since(const std::filesystem::path& run_dir, std::uint64_t offset,
                                const std::string& file_id = "",
                                std::uint64_t max_bytes = 8u << 20);
// {"rows": [...], "next_offset": N, "skipped": K, "restarted": bool, "file": "ID"}
std::string to_json_text(const MetricsChunk& chunk);

// One HTTP reply, computed without a socket so that tests can call the routing directly.
struct DashboardReply {
    int status = 200;
    std::string content_type;
    std::string body;
};

// The reply to GET `path` with query `params`. Unknown paths give 404; a refused or missing run
// gives 400 / 404 with {"error": "..."}; nothing is ever written.
DashboardReply dashboard_reply(const std::filesystem::path& runs_dir, const std::string& path,
                               const std::map<std::string, std::string>& params);

struct DashboardOptions {
    std::string runs_dir;
    std::string host = "127.0.0.1";  // loopback only unless asked
    int port = 8080;                 // 0: any free port (see DashboardServer::port)
};

// The HTTP server: binds in the constructor (throws Error naming host:port when it cannot),
// serves in listen(), which returns after stop().
class DashboardServer {
  public:
    explicit DashboardServer(const DashboardOptions& opt);
    ~DashboardServer();
    DashboardServer(const DashboardServer&) = delete;
    DashboardServer& operator=(const DashboardServer&) = delete;

    int port() const { return port_; }
    std::string url() const;
    void listen();
    bool running() const;
    void stop();

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::string host_;
    int port_ = 0;
};

}  // namespace agpt
