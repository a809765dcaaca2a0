// `agpt bench --sweep`'s library: the sweep file, the grid's expansion, the memory check, failing
// and crashing cells (with a stand-in for `agpt bench`, a shell script) and the leaderboard.
// tests/bench_sweep_cli.cmake runs the real program on a small grid.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "model/model_args.h"
#include "tools/bench_sweep.h"
#include "tools/plan.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

struct TempDir {
    fs::path path;
    TempDir() {
        path = fs::temp_directory_path() /
               ("agpt_sweep_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
                "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string file(const std::string& name, const std::string& content) const {
        const std::string p = (path / name).string();
        std::ofstream(p, std::ios::binary) << content;
        return p;
    }
};

using KV = std::pair<std::string, std::string>;

TEST(BenchSweep, ExpandsTheGridInFileOrderThenExtraCells) {
    TempDir dir;
    const Sweep s = load_sweep(dir.file("g.toml", R"(steps = 3
warmup = 0
max_memory_gib = 2.5
[base]
"training.threads" = 1
[grid]
"training.seq_len" = [32, 64]
"model.flavor" = ["tiny", "small", "medium"]
[[cell]]
"model.flavor" = "80B"
)"),
                               {{"training.seed", "7"}});
    EXPECT_EQ(s.name, "g");
    EXPECT_EQ(s.steps, 3);
    EXPECT_EQ(s.warmup, 0);
    EXPECT_EQ(s.max_memory_gib, 2.5);
    EXPECT_EQ(s.base, (ConfigOverrides{{"training.threads", "1"}, {"training.seed", "7"}}));
    EXPECT_EQ(s.axes, (std::vector<std::string>{"training.seq_len", "model.flavor"}));
    ASSERT_EQ(s.cells.size(), 7u);
    EXPECT_EQ(s.cells[0], (ConfigOverrides{{"training.seq_len", "32"}, {"model.flavor", "tiny"}}));
    EXPECT_EQ(s.cells[2],
              (ConfigOverrides{{"training.seq_len", "32"}, {"model.flavor", "medium"}}));
    EXPECT_EQ(s.cells[3], (ConfigOverrides{{"training.seq_len", "64"}, {"model.flavor", "tiny"}}));
    EXPECT_EQ(s.cells[6], (ConfigOverrides{{"model.flavor", "80B"}}));
}

std::string error_of(const std::string& path) {
    try {
        load_sweep(path, {});
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(BenchSweep, RefusesMalformedFiles) {
    TempDir dir;
    EXPECT_EQ(error_of(dir.file("a.toml", "[grid]\n\"model.flavor\" = []\n")),
              dir.path.string() +
                  "/a.toml: [grid] 'model.flavor' must be a non-empty array of "
                  "values");
    EXPECT_NE(error_of(dir.file("b.toml", "stpes = 3\n[grid]\n\"x.y\" = [1]\n"))
                  .find("b.toml: unknown key 'stpes'"),
              std::string::npos);
    EXPECT_NE(error_of(dir.file("c.toml", "steps = 0\n[grid]\n\"x.y\" = [1]\n"))
                  .find("c.toml: 'steps' must be an integer >= 1"),
              std::string::npos);
    EXPECT_NE(error_of(dir.file("d.toml", "steps = 2\n")).find("d.toml: no cells"),
              std::string::npos);
    EXPECT_NE(error_of(dir.file("e.toml", "[grid]\n\"model.flavor\" = [[1]]\n"))
                  .find("e.toml: [grid] 'model.flavor': expected a string"),
              std::string::npos);
}

// A stand-in for `agpt bench`: prints a result whose tok/s depends on the flavor; the flavor
// "small" crashes with an error line, "medium" is killed by SIGKILL.
std::string fake_bench(const TempDir& dir) {
    const std::string path = dir.file("fake_bench.sh", R"(#!/bin/bash
[[ "$1" == bench ]] || exit 9
while [[ $# -gt 0 ]]; do
  [[ "$1" == --model.flavor ]] && flavor="$2"
  shift
done
case "$flavor" in
  tiny) tok=5000 ;;
  debugmodel) tok=700 ;;
  small) echo "agpt: error: something broke inside" >&2; exit 3 ;;
  medium) kill -9 $$ ;;
esac
echo "noise before the result"
echo "{\"flavor\": \"$flavor\", \"tok_per_s\": $tok, \"tflops\": 0.01, \"mfu\": 1.5, \"step_time_s\": 0.2, \"peak_rss_gib\": 0.1, \"gemm_peak_tflops\": 0.5}"
)");
    fs::permissions(path, fs::perms::owner_exec, fs::perm_options::add);
    return path;
}

// A cuda cell's plan is held against the GPU's memory less its context, not the host's; the
// file's max_memory_gib wins over both; without a visible GPU there is no limit (the child says
// why it cannot run).
TEST(BenchSweep, CudaCellsAreLimitedByTheGpusMemory) {
    const MemoryLimit host = cell_memory_limit(0, false, 20.0, 80.0);
    EXPECT_EQ(host.gib, 20.0);
    EXPECT_EQ(host.what, "available");
    const MemoryLimit gpu = cell_memory_limit(0, true, 20.0, 79.2);
    EXPECT_DOUBLE_EQ(gpu.gib, 78.7);
    EXPECT_EQ(gpu.what, "the GPU holds");
    const MemoryLimit set = cell_memory_limit(4.0, true, 20.0, 79.2);
    EXPECT_EQ(set.gib, 4.0);
    EXPECT_EQ(set.what, "max_memory_gib is");
    EXPECT_EQ(cell_memory_limit(0, true, 20.0, 0.0).gib, 0.0);
}

TEST(BenchSweep, ReportsEveryKindOfFailureAndRanksTheRest) {
    TempDir dir;
    const Sweep s = load_sweep(dir.file("f.toml", R"(max_memory_gib = 4
[base]
"training.local_batch_size" = 2
"training.seq_len" = 64
[grid]
"model.flavor" = ["debugmodel", "tiny", "small", "medium", "no_such_flavor"]
[[cell]]
"model.flavor" = "8B"
"training.seq_len" = 8192
)"),
                               {});
    std::FILE* sink = std::tmpfile();
    const auto cells = run_sweep(s, fake_bench(dir), sink);
    std::fclose(sink);
    ASSERT_EQ(cells.size(), 6u);
    EXPECT_EQ(cells[0].status, CellStatus::Ok);
    EXPECT_EQ(cells[0].result["tok_per_s"], 700);
    EXPECT_EQ(cells[1].status, CellStatus::Ok);
    EXPECT_EQ(cells[2].status, CellStatus::Failed);
    EXPECT_EQ(cells[2].error, "agpt: error: something broke inside (exit status 3)");
    EXPECT_EQ(cells[3].status, CellStatus::Failed);
    EXPECT_EQ(cells[3].error, "killed by signal 9 (Killed)");
    EXPECT_EQ(cells[4].status, CellStatus::InvalidConfig);
    EXPECT_NE(cells[4].error.find("no_such_flavor"), std::string::npos);
    EXPECT_EQ(cells[5].status, CellStatus::OutOfMemory);
    const JobConfig big = load_job_config(
        "",
        {{"training.local_batch_size", "2"}, {"model.flavor", "8B"}, {"training.seq_len", "8192"}});
    // Planned with the flavor's own vocabulary, which `agpt bench` builds (not the tokenizer's).
    const int vocab = resolve_model_args("8B", {}).vocab_size;
    EXPECT_EQ(vocab, 128256);
    const double need = static_cast<double>(plan_memory(big, 0, vocab).total_bytes) / (1u << 30);
    EXPECT_GT(need, static_cast<double>(plan_memory(big).total_bytes) / (1u << 30));
    const JobConfig debug_cfg = load_job_config("", {{"training.local_batch_size", "2"},
                                                     {"training.seq_len", "64"},
                                                     {"model.flavor", "debugmodel"}});
    EXPECT_EQ(cells[0].plan_gib,
              static_cast<double>(plan_memory(debug_cfg, 0, 32000).total_bytes) / (1u << 30));
    EXPECT_EQ(cells[5].error, fmt::format("needs {:.2f} GiB, max_memory_gib is 4.00 GiB", need));
    EXPECT_GT(need, 4.0);

    const std::string md = sweep_markdown(s, cells);
    const auto tiny = md.find("| 1 | tiny | 64 | 5000 |"),
               debug = md.find("| 2 | debugmodel | 64 | 700 |");
    EXPECT_NE(tiny, std::string::npos) << md;
    EXPECT_NE(debug, std::string::npos) << md;
    EXPECT_LT(tiny, debug);
    EXPECT_NE(md.find("| model.flavor=small | failed | agpt: error: something broke inside"),
              std::string::npos)
        << md;
    EXPECT_NE(md.find("| model.flavor=8B training.seq_len=8192 | out of memory | needs"),
              std::string::npos)
        << md;
    EXPECT_NE(md.find("| model.flavor=no_such_flavor | invalid config |"), std::string::npos);

    const nlohmann::json j = sweep_json(s, cells);
    ASSERT_EQ(j["cells"].size(), 6u);
    EXPECT_EQ(j["cells"][0]["rank"], 1);
    EXPECT_EQ(j["cells"][0]["config"]["model.flavor"], "tiny");
    EXPECT_EQ(j["cells"][1]["config"]["model.flavor"], "debugmodel");
    EXPECT_TRUE(j["cells"][2]["rank"].is_null());
    EXPECT_EQ(j["cells"][2]["status"], "failed");
    EXPECT_EQ(j["cells"][5]["status"], "out of memory");
}

// The activation checkpointing axis: each cell is planned (and would be benched) in its mode, the
// leaderboard has a column for it, and a mode the family lacks is an invalid cell.
TEST(BenchSweep, ActivationCheckpointIsAnAxis) {
    TempDir dir;
    const Sweep s = load_sweep(dir.file("ac.toml", R"(
[base]
"model.flavor" = "tiny"
"training.local_batch_size" = 8
"training.seq_len" = 128
[grid]
"activation_checkpoint.mode" = ["none", "full"]
[[cell]]
"model.name" = "gpt2"
"model.flavor" = "gpt2_tiny"
"activation_checkpoint.mode" = "full"
)"),
                               {});
    ASSERT_EQ(s.cells.size(), 3u);
    std::FILE* sink = std::tmpfile();
    const auto cells = run_sweep(s, fake_bench(dir), sink);
    std::fclose(sink);
    ASSERT_EQ(cells[0].status, CellStatus::Ok);
    ASSERT_EQ(cells[1].status, CellStatus::Ok);
    auto planned = [](const std::string& mode) {
        const JobConfig cfg = load_job_config("", {{"model.flavor", "tiny"},
                                                   {"training.local_batch_size", "8"},
                                                   {"training.seq_len", "128"},
                                                   {"activation_checkpoint.mode", mode}});
        return static_cast<double>(plan_memory(cfg, 0, 32000).total_bytes) / (1u << 30);
    };
    EXPECT_EQ(cells[0].plan_gib, planned("none"));
    EXPECT_EQ(cells[1].plan_gib, planned("full"));
    EXPECT_LT(cells[1].plan_gib, cells[0].plan_gib);
    EXPECT_EQ(cells[2].status, CellStatus::InvalidConfig);
    EXPECT_NE(cells[2].error.find("activation_checkpoint.mode"), std::string::npos)
        << cells[2].error;
    const std::string md = sweep_markdown(s, cells);
    EXPECT_NE(md.find("| rank | activation_checkpoint.mode |"), std::string::npos) << md;
    EXPECT_NE(md.find("| 1 | none |"), std::string::npos) << md;  // equal tok/s: sweep order
    EXPECT_NE(md.find("| 2 | full |"), std::string::npos) << md;
}

}  // namespace
}  // namespace agpt
