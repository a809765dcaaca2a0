// `agpt compete`'s library: the file format and its checks, the run plan, the leaderboard
// statistics on synthetic results, the PBS/Slurm scripts against expected text, and the run loop
// with a stand-in trainer (a shell script) so that failures and re-runs are quick to exercise.
// tests/compete_cli.cmake runs the real thing end to end.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "tools/compete.h"
#include "tools/stats.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

struct TempDir {
    fs::path path;
    TempDir() {
        path =
            fs::temp_directory_path() /
            ("agpt_compete_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
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

std::string error_of(const std::string& path) {
    try {
        load_competition(path);
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

const char* kTwoEntries = R"(description = "two optimizers"
seeds = 2
[base]
"model.flavor" = "tiny"
"training.steps" = 6
validation.freq = 3
"optimizer.lr" = 1e-3

[[entry]]
name = "adamw"

[[entry]]
name = "muon+qk"
"optimizer.name" = "Muon"
"optimizer.lr" = 0.02
"model.qk_norm" = true
)";

TEST(Compete, LoadsBaseAndEntriesInFileOrder) {
    TempDir dir;
    const Competition c = load_competition(dir.file("pair.toml", kTwoEntries));
    EXPECT_EQ(c.name, "pair");
    EXPECT_EQ(c.description, "two optimizers");
    EXPECT_EQ(c.seeds, 2);
    const ConfigOverrides base = {{"model.flavor", "tiny"},
                                  {"training.steps", "6"},
                                  {"validation.freq", "3"},
                                  {"optimizer.lr", "0.001"}};
    EXPECT_EQ(c.base, base);
    ASSERT_EQ(c.entries.size(), 2u);
    EXPECT_EQ(c.entries[0].name, "adamw");
    EXPECT_TRUE(c.entries[0].overrides.empty());
    const ConfigOverrides muon = {
        {"optimizer.name", "Muon"}, {"optimizer.lr", "0.02"}, {"model.qk_norm", "true"}};
    EXPECT_EQ(c.entries[1].overrides, muon);

    // The entry's overrides come after the base's, then the competition's own keys.
    const ConfigOverrides run = run_overrides(c, c.entries[1], 2, "out");
    ASSERT_EQ(run.size(), base.size() + muon.size() + 3);
    EXPECT_EQ(run[4], (std::pair<std::string, std::string>{"optimizer.name", "Muon"}));
    EXPECT_EQ(run[7], (std::pair<std::string, std::string>{"training.seed", "2"}));
    EXPECT_EQ(run[8], (std::pair<std::string, std::string>{"job.dump_folder", "out/muon+qk"}));
    EXPECT_EQ(run[9], (std::pair<std::string, std::string>{"job.name", "seed2"}));
    const JobConfig cfg = load_job_config("", run);
    EXPECT_EQ(cfg.optimizer.name, "Muon");
    EXPECT_EQ(std::get<double>(cfg.optimizer.hyper.at("lr")), 0.02);
    EXPECT_TRUE(cfg.model.qk_norm);
    EXPECT_EQ(run_folder("out", "muon+qk", 2), "out/muon+qk/seed2");
}

TEST(Compete, RefusesBadFilesNamingEntryAndKey) {
    TempDir dir;
    const std::string head = "[base]\n\"training.steps\" = 4\n";
    EXPECT_EQ(
        error_of(dir.file("a.toml", head + "[[entry]]\nname = \"x\"\n\"training.stpes\" = 3\n")),
        dir.path.string() +
            "/a.toml: entry 'x': --training.stpes: unknown key 'training.stpes' (did you "
            "mean 'training.steps'?)");
    EXPECT_NE(
        error_of(dir.file("b.toml", head + "[[entry]]\nname = \"y\"\n\"optimizer.lr\" = -1\n"))
            .find("b.toml: entry 'y': "),
        std::string::npos);
    EXPECT_NE(
        error_of(dir.file("c.toml", head + "[[entry]]\nname = \"z\"\n\"training.seed\" = 3\n"))
            .find("c.toml: entry 'z': 'training.seed' is set by the competition"),
        std::string::npos);
    EXPECT_NE(
        error_of(dir.file("d.toml", head + "[[entry]]\nname = \"z\"\n[[entry]]\nname = \"z\"\n"))
            .find("entry name 'z' is used twice"),
        std::string::npos);
    EXPECT_NE(
        error_of(dir.file("e.toml", head + "[[entry]]\nname = \"a/b\"\n")).find("entry name 'a/b'"),
        std::string::npos);
    EXPECT_NE(error_of(dir.file("f.toml", head)).find("f.toml: no [[entry]] tables"),
              std::string::npos);
    EXPECT_NE(error_of(dir.file("g.toml", "steps = 3\n" + head + "[[entry]]\nname = \"a\"\n"))
                  .find("g.toml: unknown key 'steps'"),
              std::string::npos);
    EXPECT_NE(error_of(dir.file("h.toml",
                                "[base]\n\"validation.enable\" = false\n[[entry]]\n"
                                "name = \"a\"\n"))
                  .find("h.toml: entry 'a': validation.enable is false"),
              std::string::npos);
    EXPECT_NE(error_of(dir.file("i.toml", "[base\n")).find("i.toml: line 1"), std::string::npos);
    EXPECT_NE(error_of((dir.path / "missing.toml").string()).find("missing.toml: cannot open"),
              std::string::npos);
}

EntryResult synthetic(const std::string& name, std::vector<double> losses) {
    EntryResult e;
    e.name = name;
    e.final_val_loss = std::move(losses);
    for (std::size_t i = 0; i < e.final_val_loss.size(); i++)
        e.seeds.push_back(static_cast<int>(i) + 1);
    e.tok_per_s = 1000;
    return e;
}

TEST(Compete, RanksByMeanAndMarksTiesWithWelch) {
    // b leads; a trails by 0.0057 with a spread as large (p ≈ 0.43: a tie); c trails by 0.028
    // (p ≈ 0.009); d (a copy of b) ties exactly; e has no finished run.
    std::vector<EntryResult> entries = {synthetic("a", {1.509, 1.520, 1.503}),
                                        synthetic("c", {1.530, 1.541, 1.527}), synthetic("e", {}),
                                        synthetic("b", {1.512, 1.498, 1.505}),
                                        synthetic("d", {1.512, 1.498, 1.505})};
    rank_entries(entries, 0.95);
    ASSERT_EQ(entries.size(), 5u);
    EXPECT_EQ(entries[0].name, "b");
    EXPECT_EQ(entries[1].name, "d");
    EXPECT_EQ(entries[2].name, "a");
    EXPECT_EQ(entries[3].name, "c");
    EXPECT_EQ(entries[4].name, "e");
    EXPECT_NEAR(entries[0].mean, 1.505, 1e-12);
    EXPECT_NEAR(entries[0].std, 0.007, 1e-12);
    EXPECT_TRUE(entries[0].tied_with_leader);
    EXPECT_EQ(entries[1].p_vs_leader, 1.0);
    EXPECT_TRUE(entries[1].tied_with_leader);
    EXPECT_NEAR(entries[2].p_vs_leader, 0.4286924, 1e-6);  // numerical integration, stats_test
    EXPECT_TRUE(entries[2].tied_with_leader);
    EXPECT_NEAR(entries[3].p_vs_leader, 0.0092717, 1e-6);
    EXPECT_FALSE(entries[3].tied_with_leader);
    EXPECT_FALSE(entries[4].tied_with_leader);

    const std::string md = leaderboard_markdown(entries, 0.95, 3);
    EXPECT_NE(md.find("Welch's two-sided t-test at 95% confidence"), std::string::npos);
    EXPECT_NE(md.find("| 1 | b | 1.5050 ± 0.0070 | 3/3 | 0 | — | leader | 1000 |"),
              std::string::npos)
        << md;
    EXPECT_NE(md.find("| 3 | a | 1.5107 ± 0.0086 | 3/3 | +0.0057 | 0.429 | ≈ | 1000 |"),
              std::string::npos)
        << md;
    EXPECT_NE(md.find("| 4 | c | 1.5327 ± 0.0074 | 3/3 | +0.0277 | 0.00927 |  | 1000 |"),
              std::string::npos)
        << md;
    EXPECT_NE(md.find("| — | e | — | 0/3 | — | — |  | — |"), std::string::npos) << md;

    // At 99.5% confidence c (p ≈ 0.009) is no longer told apart from the leader.
    rank_entries(entries, 0.995);
    EXPECT_TRUE(entries[3].tied_with_leader);
    EXPECT_NE(leaderboard_markdown(entries, 0.995, 3)
                  .find("| 4 | c | 1.5327 ± 0.0074 | 3/3 | +0.0277 | 0.00927 | ≈ |"),
              std::string::npos);
}

TEST(Compete, OneSeedAllowsNoTest) {
    std::vector<EntryResult> entries = {synthetic("a", {1.6}), synthetic("b", {1.5})};
    rank_entries(entries, 0.95);
    EXPECT_EQ(entries[0].name, "b");
    EXPECT_TRUE(std::isnan(entries[1].p_vs_leader));
    EXPECT_FALSE(entries[1].tied_with_leader);
    const std::string md = leaderboard_markdown(entries, 0.95, 1);
    EXPECT_NE(md.find("no test of significance is possible"), std::string::npos);
    EXPECT_NE(md.find("| 2 | a | 1.6000 | 1/1 | +0.1000 | — |  | 1000 |"), std::string::npos) << md;
}

TEST(Compete, EmitsSlurmAndPbsScripts) {
    TempDir dir;
    const Competition c = load_competition(dir.file("pair.toml", kTwoEntries));
    CompeteOptions o;
    o.out = "runs/pair";
    const auto slurm = emit_job_scripts(c, o, "slurm", "/opt/agpt/bin/agpt", "/home/me/agpt");
    ASSERT_EQ(slurm.size(), 2u);
    const std::string path = dir.path.string() + "/pair.toml";
    const std::string args =
        " --model.flavor tiny --training.steps 6 --validation.freq 3"
        " --optimizer.lr 0.001";
    EXPECT_EQ(slurm.at("adamw.slurm"),
              "#!/bin/bash\n"
              "#SBATCH --job-name=pair-adamw\n"
              "#SBATCH --nodes=1\n"
              "#SBATCH --output=runs/pair/adamw/slurm-%j.out\n"
              "# Entry 'adamw' of " +
                  path +
                  ", seeds 1..2, one after another. When every "
                  "entry's job is done,\n"
                  "# `agpt compete " +
                  path +
                  " --out runs/pair` finds the runs finished and writes "
                  "the report.\n"
                  "cd /home/me/agpt\n"
                  "mkdir -p runs/pair/adamw\n"
                  "/opt/agpt/bin/agpt train" +
                  args +
                  " --training.seed 1 --job.dump_folder runs/pair/adamw --job.name seed1\n"
                  "/opt/agpt/bin/agpt train" +
                  args + " --training.seed 2 --job.dump_folder runs/pair/adamw --job.name seed2\n");
    o.seeds = 1;
    const auto pbs = emit_job_scripts(c, o, "pbs", "/opt/agpt/bin/agpt", "/home/me/my runs");
    EXPECT_EQ(pbs.at("muon+qk.pbs"),
              "#!/bin/bash\n"
              "#PBS -N pair-muon+qk\n"
              "#PBS -l select=1\n"
              "#PBS -j oe\n"
              "#PBS -o runs/pair/muon+qk/pbs-$PBS_JOBID.out\n"
              "# Entry 'muon+qk' of " +
                  path +
                  ", seeds 1..1, one after another. When every "
                  "entry's job is done,\n"
                  "# `agpt compete " +
                  path +
                  " --out runs/pair` finds the runs finished and writes "
                  "the report.\n"
                  "cd '/home/me/my runs'\n"
                  "mkdir -p runs/pair/muon+qk\n"
                  "/opt/agpt/bin/agpt train" +
                  args +
                  " --optimizer.name Muon --optimizer.lr 0.02 --model.qk_norm true"
                  " --training.seed 1 --job.dump_folder runs/pair/muon+qk --job.name seed1\n");
    EXPECT_THROW(emit_job_scripts(c, o, "lsf", "agpt", "."), Error);
}

// A stand-in for `agpt train`: writes a metrics.jsonl whose final val_loss is 2 + seed/100
// (+ 0.5 for entries whose optimizer.lr is 0.02), or fails like the trainer when asked to.
std::string fake_trainer(const TempDir& dir) {
    const std::string path = dir.file("fake_agpt.sh", R"(#!/bin/bash
shift  # "train"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --job.dump_folder) folder="$2" ;;
    --job.name) name="$2" ;;
    --training.seed) seed="$2" ;;
    --training.steps) steps="$2" ;;
    --optimizer.lr) lr="$2" ;;
    --model.qk_norm) [[ "$2" == true && -n "$FAKE_FAIL_QK" ]] && { echo "step 3: loss is nan; training diverged" >&2; exit 1; } ;;
  esac
  shift 2
done
run="$folder/$name"
[[ -e "$run" ]] && { echo "$run: run folder exists" >&2; exit 1; }
mkdir -p "$run"
echo "$seed" >> "$folder/../calls"
for s in $(seq 1 "$steps"); do
  echo "{\"step\": $s, \"loss\": $((10 - s)).5, \"tok_per_s\": 100}" >> "$run/metrics.jsonl"
done
val="2.0$seed"; [[ "$lr" == 0.02 ]] && val="2.5$seed"
echo "{\"step\": $steps, \"val_loss\": $val}" >> "$run/metrics.jsonl"
)");
    fs::permissions(path, fs::perms::owner_exec, fs::perm_options::add);
    return path;
}

TEST(Compete, RunsEverySeedOnceAndReportsFailures) {
    TempDir dir;
    const Competition c = load_competition(dir.file("pair.toml", kTwoEntries));
    const std::string exe = fake_trainer(dir);
    CompeteOptions o;
    o.out = (dir.path / "runs").string();
    std::FILE* sink = std::tmpfile();

    CompeteOptions bad = o;
    bad.confidence = 95;
    EXPECT_THROW(run_competition(c, bad, exe, sink), Error);
    EXPECT_FALSE(fs::exists(o.out));

    setenv("FAKE_FAIL_QK", "1", 1);
    CompeteProgress p = run_competition(c, o, exe, sink);
    EXPECT_EQ(p.ran, 2);
    EXPECT_EQ(p.failed, 2);
    ASSERT_EQ(p.failures.size(), 2u);
    EXPECT_EQ(p.failures[0],
              "muon+qk seed 1: step 3: loss is nan; training diverged (exit status 1)");
    EXPECT_TRUE(run_finished(run_folder(o.out, "adamw", 2), 6));
    EXPECT_FALSE(run_finished(run_folder(o.out, "adamw", 2), 7));

    // Again, without the failure: the finished runs are skipped, the failed ones run.
    unsetenv("FAKE_FAIL_QK");
    p = run_competition(c, o, exe, sink);
    EXPECT_EQ(p.skipped, 2);
    EXPECT_EQ(p.ran, 2);
    EXPECT_EQ(p.failed, 0);
    std::ifstream calls(fs::path(o.out) / "calls");
    std::string all((std::istreambuf_iterator<char>(calls)), {});
    EXPECT_EQ(all, "1\n2\n1\n2\n");  // adamw's two seeds, then muon+qk's two

    // An interrupted run (no final val_loss) is moved aside and run again.
    const std::string cut = run_folder(o.out, "adamw", 1);
    fs::resize_file(fs::path(cut) / "metrics.jsonl", 20);
    p = run_competition(c, o, exe, sink);
    EXPECT_EQ(p.ran, 1);
    EXPECT_EQ(p.skipped, 3);
    EXPECT_TRUE(fs::exists(cut + ".incomplete-1"));
    EXPECT_TRUE(run_finished(cut, 6));
    std::fclose(sink);

    const auto ranked = collect_results(c, o);
    ASSERT_EQ(ranked.size(), 2u);
    EXPECT_EQ(ranked[0].name, "adamw");
    EXPECT_NEAR(ranked[0].mean, 2.015, 1e-9);
    EXPECT_NEAR(ranked[1].mean, 2.515, 1e-9);
    EXPECT_NEAR(ranked[0].std, std::sqrt(0.5) * 0.01, 1e-9);
    EXPECT_EQ(ranked[1].p_vs_leader, welch_t_test({2.51, 2.52}, {2.01, 2.02}).p);
    EXPECT_EQ(ranked[0].curve_step.size(), 6u);
    EXPECT_EQ(ranked[0].curve_loss[0], 9.5);
    EXPECT_EQ(ranked[0].tok_per_s, 100);

    write_competition_report(c, o, ranked, p, (dir.path / "report").string());
    std::ifstream readme(dir.path / "report" / "README.md");
    std::string md((std::istreambuf_iterator<char>(readme)), {});
    EXPECT_NE(md.find("# Competition: pair"), std::string::npos);
    EXPECT_NE(md.find("| muon+qk | `optimizer.name = Muon`, `optimizer.lr = 0.02`, "
                      "`model.qk_norm = true` |"),
              std::string::npos)
        << md;
    EXPECT_TRUE(fs::file_size(dir.path / "report" / "loss_curves.png") > 1000);
    EXPECT_TRUE(fs::file_size(dir.path / "report" / "val_loss_curves.png") > 1000);
}

}  // namespace
}  // namespace agpt
