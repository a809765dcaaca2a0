#include <gtest/gtest.h>

#include <fcntl.h>
#include <httplib.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "tools/dashboard.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Per process: ctest runs each test in its own process, and other checkouts may run them too.
const fs::path kTestRoot =
    fs::temp_directory_path() / fmt::format("agpt_dashboard_test_{}", ::getpid());

struct RemoveTestRootAtExit {
    ~RemoveTestRootAtExit() {
        std::error_code ec;
        fs::remove_all(kTestRoot, ec);
    }
} remove_test_root_at_exit;

fs::path fresh_dir(const std::string& name) {
    const fs::path dir = kTestRoot / name;
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

void write_file(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
}

void append_file(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::app);
    out << text;
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

TEST(Dashboard, ReadsMetricsIncrementallyLeavingPartialLastLine) {
    const fs::path run = fresh_dir("incremental");
    const std::string complete =
        "{\"step\":1,\"loss\":5.25,\"lr\":0.001}\n"
        "{\"step\":2,\"loss\":4.75\n"  // malformed: cut and rejoined
        "[1,2]\n"                      // JSON, but not an object
        "\n"                           // blank: ignored, not counted
        "{\"step\":3,\"loss\":4.5,\"tok_per_s\":1234.5}\n";
    write_file(run / "metrics.jsonl", complete + "{\"step\":4,\"lo");

    const MetricsChunk first = read_metrics_since(run, 0);
    ASSERT_EQ(first.rows.size(), 2u);
    EXPECT_EQ(json::parse(first.rows[0]), json::parse("{\"step\":1,\"loss\":5.25,\"lr\":0.001}"));
    EXPECT_EQ(json::parse(first.rows[1])["step"], 3);
    EXPECT_EQ(first.rows[1], "{\"step\":3,\"loss\":4.5,\"tok_per_s\":1234.5}");  // as written
    EXPECT_EQ(first.skipped, 2);
    EXPECT_FALSE(first.restarted);
    EXPECT_EQ(first.next_offset, complete.size());  // the partial line waits
    EXPECT_FALSE(first.file_id.empty());

    // Nothing new: an empty reply at the same offset.
    const MetricsChunk idle = read_metrics_since(run, first.next_offset, first.file_id);
    EXPECT_TRUE(idle.rows.empty());
    EXPECT_EQ(idle.skipped, 0);
    EXPECT_EQ(idle.next_offset, first.next_offset);

    // The writer finishes the line and adds one more.
    append_file(run / "metrics.jsonl", "ss\":4.25}\n{\"step\":5,\"val_loss\":4.0}\n");
    const MetricsChunk second = read_metrics_since(run, first.next_offset, first.file_id);
    ASSERT_EQ(second.rows.size(), 2u);
    EXPECT_EQ(json::parse(second.rows[0]), json::parse("{\"step\":4,\"loss\":4.25}"));
    EXPECT_EQ(json::parse(second.rows[1]), json::parse("{\"step\":5,\"val_loss\":4.0}"));
    EXPECT_EQ(second.skipped, 0);
    EXPECT_FALSE(second.restarted);
    EXPECT_EQ(second.next_offset, fs::file_size(run / "metrics.jsonl"));
}

TEST(Dashboard, ChunksAreBoundedAndOverlongLinesSkipped) {
    const fs::path run = fresh_dir("bounded");
    const std::string line1 = "{\"step\":1,\"loss\":2.0}\n";
    const std::string line2 = "{\"step\":2,\"loss\":1.5}\n";
    write_file(run / "metrics.jsonl", line1 + line2);
    // Room for one and a half lines: the reply stops after the first.
    const MetricsChunk a = read_metrics_since(run, 0, "", line1.size() + line2.size() / 2);
    ASSERT_EQ(a.rows.size(), 1u);
    EXPECT_EQ(a.next_offset, line1.size());
    const MetricsChunk b = read_metrics_since(run, a.next_offset, a.file_id, 1000);
    ASSERT_EQ(b.rows.size(), 1u);
    EXPECT_EQ(json::parse(b.rows[0])["loss"].get<double>(), 1.5);

    // A line longer than a whole chunk is counted as skipped rather than stalling the reader.
    const fs::path run2 = fresh_dir("overlong");
    write_file(run2 / "metrics.jsonl",
               "{\"step\":1,\"note\":\"" + std::string(100, 'x') + "\"}\n" + line2);
    MetricsChunk c = read_metrics_since(run2, 0, "", 64);
    EXPECT_TRUE(c.rows.empty());
    EXPECT_EQ(c.skipped, 1);
    EXPECT_EQ(c.next_offset, 64u);
    int skipped = c.skipped;
    std::vector<std::string> rows;
    while (c.next_offset < fs::file_size(run2 / "metrics.jsonl")) {
        const std::uint64_t before = c.next_offset;
        c = read_metrics_since(run2, c.next_offset, c.file_id, 64);
        ASSERT_GT(c.next_offset, before);
        skipped += c.skipped;
        rows.insert(rows.end(), c.rows.begin(), c.rows.end());
    }
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(json::parse(rows[0])["step"], 2);
    EXPECT_EQ(skipped, 2);  // the head of the long line, then its tail
}

TEST(Dashboard, RestartsWhenTheFileIsReplacedOrShrinks) {
    const fs::path run = fresh_dir("restart");
    write_file(run / "metrics.jsonl", "{\"step\":1,\"loss\":3.0}\n{\"step\":2,\"loss\":2.0}\n");
    const MetricsChunk a = read_metrics_since(run, 0);
    ASSERT_EQ(a.rows.size(), 2u);

    // A resumed run rewrites metrics.jsonl through a rename: same length, another file.
    write_file(run / "metrics.tmp", "{\"step\":1,\"loss\":3.0}\n{\"step\":2,\"loss\":9.0}\n");
    fs::rename(run / "metrics.tmp", run / "metrics.jsonl");
    const MetricsChunk b = read_metrics_since(run, a.next_offset, a.file_id);
    EXPECT_TRUE(b.restarted);
    ASSERT_EQ(b.rows.size(), 2u);
    EXPECT_EQ(json::parse(b.rows[1])["loss"].get<double>(), 9.0);
    EXPECT_NE(b.file_id, a.file_id);

    // Truncated in place below the reader's offset.
    fs::resize_file(run / "metrics.jsonl", 22);
    const MetricsChunk c = read_metrics_since(run, b.next_offset, b.file_id);
    EXPECT_TRUE(c.restarted);
    ASSERT_EQ(c.rows.size(), 1u);
    EXPECT_EQ(c.next_offset, 22u);

    // No metrics file (yet): empty; a reader that had one is told to start over.
    const fs::path empty = fresh_dir("no_metrics");
    EXPECT_TRUE(read_metrics_since(empty, 0).rows.empty());
    EXPECT_FALSE(read_metrics_since(empty, 0).restarted);
    EXPECT_TRUE(read_metrics_since(empty, 10, "1:2").restarted);
}

TEST(Dashboard, StatusComesFromTrainLogAndTheRunLock) {
    const fs::path runs = fresh_dir("status");
    auto run_with_log = [&](const std::string& name, const std::string& log) {
        fs::create_directories(runs / name);
        write_file(runs / name / "train.log", log);
        return runs / name;
    };
    const std::string start = "run outputs/x | data tinyshakespeare (100 train / 10 val tokens)\n";
    const std::string steps = "step     1/10 | loss 5.0000\nstep     2/10 | loss 4.0000\n";
    EXPECT_EQ(run_status(run_with_log("finished", start + steps + "done in 3s | 100 tok/s\n")),
              "finished");
    EXPECT_EQ(
        run_status(run_with_log("preempted", start + steps + "stopping at step 2: signal 15\n")),
        "preempted");
    EXPECT_EQ(run_status(run_with_log("failed", start + steps)), "failed");
    // A preempted run resumed to completion, and a finished run whose next session died.
    EXPECT_EQ(run_status(run_with_log("resumed", start + "stopping at step 2: signal 15\n" + start +
                                                     "resumed from ckpt (step 2)\ndone in 1s\n")),
              "finished");
    EXPECT_EQ(run_status(run_with_log("rerun_died", start + "done in 1s\n" + start + steps)),
              "failed");
    fs::create_directories(runs / "no_log");
    EXPECT_EQ(run_status(runs / "no_log"), "unknown");

    // While a process holds the trainer's lock, the run is running whatever its log says.
    const fs::path live = run_with_log("live", start + steps);
    const int fd = ::open((live / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
    EXPECT_EQ(run_status(live), "running");
    ::close(fd);
    EXPECT_EQ(run_status(live), "failed");  // the lock file stays; no one holds it
}

TEST(Dashboard, ListsRunFoldersWithConfigSummary) {
    const fs::path runs = fresh_dir("list");
    fs::create_directories(runs / "b_run");
    write_file(runs / "b_run" / "config.toml",
               "[model]\nname = \"agpt\"\nflavor = \"debugmodel\"\n[optimizer]\nname = "
               "\"AdamW\"\nlr = 8e-4\n[training]\nsteps = 200\n");
    write_file(runs / "b_run" / "metrics.jsonl", "{\"step\":1,\"loss\":2.0}\n");
    write_file(runs / "b_run" / "train.log", "done in 1s\n");
    fs::create_directories(runs / "a_run");
    write_file(runs / "a_run" / "config.toml", "[model\nname = ");  // does not parse
    fs::create_directories(runs / "not_a_run" / "sub");
    write_file(runs / "stray.txt", "x");

    const std::vector<DashboardRun> listed = list_runs(runs);
    ASSERT_EQ(listed.size(), 2u);
    EXPECT_EQ(listed[0].name, "a_run");
    EXPECT_EQ(listed[0].status, "unknown");
    EXPECT_NE(listed[0].config_error.find("config.toml"), std::string::npos);
    EXPECT_TRUE(listed[0].config_summary.empty());
    EXPECT_EQ(listed[0].metrics_bytes, 0u);
    EXPECT_EQ(listed[1].name, "b_run");
    EXPECT_EQ(listed[1].status, "finished");
    EXPECT_EQ(listed[1].config_summary["model.flavor"], "debugmodel");
    EXPECT_EQ(listed[1].config_summary["optimizer.name"], "AdamW");
    EXPECT_DOUBLE_EQ(listed[1].config_summary["optimizer.lr"].get<double>(), 8e-4);
    EXPECT_EQ(listed[1].config_summary["training.steps"], 200);
    EXPECT_EQ(listed[1].metrics_bytes, fs::file_size(runs / "b_run" / "metrics.jsonl"));
    EXPECT_GT(listed[1].updated_unix, 1.6e9);

    EXPECT_THROW(list_runs(runs / "missing"), Error);
    EXPECT_THROW(list_runs(runs / "stray.txt"), Error);
}

TEST(Dashboard, RefusesRunNamesOutsideRunsDir) {
    const fs::path runs = fresh_dir("refuse/runs");
    fs::create_directories(runs / "ok");
    const fs::path outside = fresh_dir("refuse/outside");
    write_file(outside / "metrics.jsonl", "{\"step\":1,\"loss\":1}\n");
    fs::create_directory_symlink(outside, runs / "escape");

    EXPECT_EQ(resolve_run_dir(runs, "ok"), runs / "ok");
    const std::vector<std::string> refused = {"",
                                              ".",
                                              "..",
                                              "../outside",
                                              "ok/..",
                                              "/etc",
                                              "/tmp",
                                              "ok/../../outside",
                                              std::string("ok\0x", 4),
                                              "escape"};
    for (const std::string& name : refused) {
        try {
            resolve_run_dir(runs, name);
            ADD_FAILURE() << "accepted run name '" << name << "'";
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("run '"), std::string::npos) << e.what();
        }
    }
    try {
        resolve_run_dir(runs, "nope");
        ADD_FAILURE() << "accepted a missing run";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("no such run"), std::string::npos) << e.what();
    }

    // Through the HTTP routing: refused with 400 and nothing from outside in the body.
    for (const std::string name : {"..", "../outside", "/etc", "escape"}) {
        const DashboardReply r = dashboard_reply(runs, "/api/metrics", {{"run", name}});
        EXPECT_EQ(r.status, 400) << name;
        EXPECT_EQ(r.body.find("\"loss\""), std::string::npos) << name;
        EXPECT_TRUE(json::parse(r.body).contains("error"));
        EXPECT_EQ(dashboard_reply(runs, "/api/config", {{"run", name}}).status, 400) << name;
    }
}

TEST(Dashboard, RoutesPagesAndApi) {
    const fs::path runs = fresh_dir("routes");
    fs::create_directories(runs / "r1");
    write_file(runs / "r1" / "metrics.jsonl", "{\"step\":1,\"loss\":2.5}\n{\"step\":2,");
    write_file(runs / "r1" / "config.toml", "[training]\nsteps = 7\n");

    const DashboardReply list = dashboard_reply(runs, "/api/runs", {});
    EXPECT_EQ(list.status, 200);
    EXPECT_EQ(list.content_type, "application/json; charset=utf-8");
    const json listed = json::parse(list.body);
    ASSERT_EQ(listed["runs"].size(), 1u);
    EXPECT_EQ(listed["runs"][0]["name"], "r1");
    EXPECT_EQ(listed["runs"][0]["config"]["training.steps"], 7);

    const json m = json::parse(dashboard_reply(runs, "/api/metrics", {{"run", "r1"}}).body);
    EXPECT_EQ(m["rows"], json::parse("[{\"step\":1,\"loss\":2.5}]"));
    EXPECT_EQ(m["next_offset"], 22);
    const json m2 =
        json::parse(dashboard_reply(runs, "/api/metrics",
                                    {{"run", "r1"}, {"offset", "22"}, {"file", m["file"]}})
                        .body);
    EXPECT_TRUE(m2["rows"].empty());
    EXPECT_FALSE(m2["restarted"].get<bool>());

    EXPECT_EQ(dashboard_reply(runs, "/api/config", {{"run", "r1"}}).body,
              "[training]\nsteps = 7\n");
    EXPECT_EQ(dashboard_reply(runs, "/api/metrics", {}).status, 400);
    EXPECT_EQ(dashboard_reply(runs, "/api/metrics", {{"run", "nope"}}).status, 404);
    for (const char* bad : {"-1", "x", "12x", ""})
        EXPECT_EQ(dashboard_reply(runs, "/api/metrics", {{"run", "r1"}, {"offset", bad}}).status,
                  400)
            << bad;
    EXPECT_EQ(dashboard_reply(runs, "/api/nothing", {}).status, 404);
    EXPECT_EQ(dashboard_reply(runs, "/../../etc/passwd", {}).status, 404);

    // The page and the chart library are served from the bytes compiled in.
    const DashboardReply page = dashboard_reply(runs, "/", {});
    EXPECT_EQ(page.status, 200);
    EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
    EXPECT_EQ(page.body, read_file(fs::path(AGPT_SOURCE_DIR) / "web/dashboard/index.html"));
    const DashboardReply lib = dashboard_reply(runs, "/uPlot.iife.min.js", {});
    EXPECT_EQ(lib.status, 200);
    EXPECT_EQ(lib.body, read_file(fs::path(AGPT_SOURCE_DIR) /
                                  "web/node_modules/uplot/dist/uPlot.iife.min.js"));
}

TEST(Dashboard, ServesOnLoopbackAndOnlyReads) {
    const fs::path runs = fresh_dir("http");
    fs::create_directories(runs / "r1");
    write_file(runs / "r1" / "metrics.jsonl", "{\"step\":1,\"loss\":2.5}\n");
    const std::string before = read_file(runs / "r1" / "metrics.jsonl");

    DashboardServer server({.runs_dir = runs.string(), .port = 0});
    ASSERT_GT(server.port(), 0);
    EXPECT_EQ(server.url(), "http://127.0.0.1:" + std::to_string(server.port()) + "/");
    std::thread serving([&] { server.listen(); });

    httplib::Client client("127.0.0.1", server.port());
    for (int tries = 0; tries < 100 && !server.running(); tries++)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto got = client.Get("/api/metrics?run=r1");
    ASSERT_TRUE(got);
    EXPECT_EQ(got->status, 200);
    EXPECT_EQ(json::parse(got->body)["rows"][0]["loss"].get<double>(), 2.5);
    // Replies go out uncompressed even to a browser that accepts brotli (compressing large
    // metrics chunks cost more than sending them over loopback).
    auto plain = client.Get("/api/metrics?run=r1", {{"Accept-Encoding", "gzip, deflate, br"}});
    ASSERT_TRUE(plain);
    EXPECT_FALSE(plain->has_header("Content-Encoding"));
    EXPECT_EQ(json::parse(plain->body)["rows"][0]["loss"].get<double>(), 2.5);
    auto refused = client.Get("/api/metrics?run=..%2Fhttp");
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->status, 400);
    // No endpoint takes a write.
    for (const char* path : {"/api/metrics?run=r1", "/api/runs", "/"}) {
        auto posted = client.Post(path, "{\"step\":9}", "application/json");
        ASSERT_TRUE(posted);
        EXPECT_GE(posted->status, 400) << path;
        auto deleted = client.Delete(path);
        ASSERT_TRUE(deleted);
        EXPECT_GE(deleted->status, 400) << path;
    }
    EXPECT_EQ(read_file(runs / "r1" / "metrics.jsonl"), before);

    // A second server cannot take the same port: one clear error naming it.
    try {
        DashboardServer clash({.runs_dir = runs.string(), .port = server.port()});
        ADD_FAILURE() << "bound a port in use";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find(std::to_string(server.port())), std::string::npos);
    }
    server.stop();
    serving.join();

    EXPECT_THROW(DashboardServer({.runs_dir = (runs / "missing").string(), .port = 0}), Error);
    // One run's folder instead of the folder of runs: said so, with the folder to give instead.
    try {
        DashboardServer one_run({.runs_dir = (runs / "r1").string(), .port = 0});
        ADD_FAILURE() << "served a run folder as a folder of runs";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("is one run's folder"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("(" + runs.string() + ")"), std::string::npos)
            << e.what();
    }
}

}  // namespace
}  // namespace agpt
