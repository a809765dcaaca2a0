// agpt launch / submit / doctor's distributed lines, against fake PBS and Slurm environments.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "core/error.h"
#include "dist/launcher.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

struct TempDir {
    fs::path path = fs::temp_directory_path() / ("agpt_launch_" + std::to_string(::getpid()));
    TempDir() { fs::create_directories(path); }
    ~TempDir() { fs::remove_all(path); }
};

LaunchOptions train_on(int ranks = -1, int ppn = -1, std::string bind = "") {
    LaunchOptions o;
    o.ranks = ranks;
    o.ranks_per_node = ppn;
    o.cpu_bind = std::move(bind);
    o.command = {"agpt", "train", "--job.name", "my run"};
    return o;
}

TEST(Launch, LocalRunsMpirunWithOneThreadCountPerRank) {
    const Environment env{{"PATH", "/usr/bin"}, {"AGPT_DATA_DIR", "/data"}, {"HOME", "/root"}};
    const LaunchPlan p = plan_launch(train_on(4), env, 16);
    EXPECT_EQ(p.job.scheduler, "local");
    EXPECT_EQ(p.threads_per_rank, 4);
    EXPECT_EQ(shell_command(p.argv),
              "mpirun -np 4 --bind-to none -x OMP_NUM_THREADS=4 -x PATH -x AGPT_DATA_DIR agpt "
              "train --job.name 'my run'");
    EXPECT_EQ(shell_command(plan_launch(train_on(2, -1, "depth"), env, 16).argv),
              "mpirun -np 2 --map-by slot:PE=8 --bind-to core -x OMP_NUM_THREADS=8 -x PATH -x "
              "AGPT_DATA_DIR agpt train --job.name 'my run'");
    EXPECT_EQ(shell_command(plan_launch(train_on(2, -1, "0-3:4-7"), env, 8).argv),
              "mpirun -np 2 --cpu-set 0-3,4-7 --bind-to core -x OMP_NUM_THREADS=4 -x PATH -x "
              "AGPT_DATA_DIR agpt train --job.name 'my run'");
    // More ranks than cores: still one thread each.
    EXPECT_EQ(plan_launch(train_on(4), env, 2).threads_per_rank, 1);
}

// A cuda job: each rank picks the GPU of its local rank (which mpirun and srun set; checked in
// tests/cuda/nccl_communicator_test.cpp), so --ppn = GPUs per node binds one rank per GPU. The
// GPUs to choose from and NCCL's settings reach every node's ranks.
TEST(Launch, CudaJobsGetOneRankPerGpuAndTheNcclSettings) {
    const Environment env{{"PATH", "/usr/bin"},
                          {"CUDA_VISIBLE_DEVICES", "0,1,2,3"},
                          {"NCCL_DEBUG", "WARN"},
                          {"NCCL_SOCKET_IFNAME", "hsn0"}};
    EXPECT_EQ(shell_command(plan_launch(train_on(-1, 4), env, 64).argv),
              "mpirun -np 4 --bind-to none -x OMP_NUM_THREADS=16 -x PATH -x CUDA_VISIBLE_DEVICES "
              "-x NCCL_DEBUG -x NCCL_SOCKET_IFNAME agpt train --job.name 'my run'");
    // srun exports the whole environment and sets SLURM_LOCALID per task.
    Environment slurm = env;
    slurm["SLURM_JOB_ID"] = "42";
    slurm["SLURM_JOB_NUM_NODES"] = "2";
    const LaunchPlan p = plan_launch(train_on(-1, 4), slurm, 64);
    EXPECT_EQ(p.ranks, 8);
    EXPECT_EQ(p.argv[0], "srun");
    EXPECT_NE(shell_command(p.argv).find("--ntasks-per-node 4"), std::string::npos);
    EXPECT_NE(shell_command(p.argv).find("--export=ALL,"), std::string::npos);
}

TEST(Launch, PbsReadsTheNodefile) {
    TempDir dir;
    const fs::path nodes = dir.path / "nodefile";
    std::ofstream(nodes) << "x1000c0s0b0n0\nx1000c0s0b0n0\nx1000c0s1b0n0\n\n";
    const Environment env{{"PBS_JOBID", "123.aurora"}, {"PBS_NODEFILE", nodes.string()}};
    const LaunchPlan p = plan_launch(train_on(-1, 4, "depth"), env, 208);
    EXPECT_EQ(p.job.scheduler, "pbs");
    EXPECT_EQ(p.job.nodes, 2);
    EXPECT_EQ(p.ranks, 8);
    EXPECT_EQ(p.threads_per_rank, 52);
    EXPECT_EQ(shell_command(p.argv),
              "mpirun -np 8 --hostfile " + nodes.string() +
                  " --map-by ppr:4:node:PE=52 --bind-to core -x OMP_NUM_THREADS=52 agpt train "
                  "--job.name 'my run'");
    EXPECT_EQ(
        error_of([&] {
            plan_launch(train_on(), {{"PBS_JOBID", "7"}, {"PBS_NODEFILE", "/nonexistent"}}, 8);
        }),
        "PBS_NODEFILE /nonexistent: cannot open");
}

TEST(Launch, SlurmUsesSrun) {
    const Environment env{
        {"SLURM_JOB_ID", "991"}, {"SLURM_NODELIST", "nid[001-004]"}, {"SLURM_JOB_NUM_NODES", "4"}};
    const LaunchPlan p = plan_launch(train_on(-1, 2), env, 64);
    EXPECT_EQ(p.job.scheduler, "slurm");
    EXPECT_EQ(shell_command(p.argv),
              "srun --nodes 4 --ntasks 8 --ntasks-per-node 2 --cpus-per-task 32 "
              "--export=ALL,OMP_NUM_THREADS=32 agpt train --job.name 'my run'");
    EXPECT_EQ(error_of([] {
                  plan_launch(train_on(), {{"SLURM_JOB_ID", "1"}, {"SLURM_NNODES", "two"}}, 8);
              }),
              "SLURM_NNODES = 'two': expected a positive integer");
}

TEST(Launch, BadOptionsAreRefused) {
    const Environment env;
    LaunchOptions empty;
    EXPECT_EQ(error_of([&] { plan_launch(empty, env, 8); }),
              "launch: no command after '--' (e.g. -- agpt train ...)");
    EXPECT_EQ(error_of([&] { plan_launch(train_on(0), env, 8); }), "launch: -n 0 must be positive");
    EXPECT_EQ(error_of([&] { plan_launch(train_on(2, -1, "0-3"), env, 8); }),
              "--cpu-bind 0-3: 1 core lists for 2 ranks per node");
    EXPECT_EQ(error_of([&] { plan_launch(train_on(2, -1, "cores"), env, 8); }),
              "--cpu-bind cores: expected 'depth' or core lists per rank like 0-3:4-7");
}

TEST(Launch, ShellCommandQuotesWhatTheShellWouldSplit) {
    EXPECT_EQ(shell_command({"a", "b c", "it's", "", "--x=1"}), "a 'b c' 'it'\\''s' '' --x=1");
}

TEST(Launch, RunCommandReturnsTheExitStatus) {
    EXPECT_EQ(run_command({"sh", "-c", "exit 3"}), 3);
    EXPECT_EQ(run_command({"sh", "-c", "kill -9 $$"}), 128 + 9);
    EXPECT_EQ(run_command({"/nonexistent/program"}), 127);
}

SubmitOptions submit_options(const std::string& scheduler) {
    SubmitOptions o;
    o.scheduler = scheduler;
    o.nodes = 2;
    o.queue = "debug";
    o.walltime = "00:30:00";
    o.account = "AuroraGPT";
    o.ranks_per_node = 12;
    o.agpt_path = "/opt/agpt/bin/agpt";
    o.workdir = "/home/me/runs";
    o.command = {"agpt", "train", "--config", "2B.toml"};
    return o;
}

TEST(Submit, PbsAndSlurmScripts) {
    EXPECT_EQ(job_script(submit_options("pbs")),
              "#!/bin/bash\n"
              "#PBS -N agpt\n"
              "#PBS -l select=2\n"
              "#PBS -l walltime=00:30:00\n"
              "#PBS -q debug\n"
              "#PBS -A AuroraGPT\n"
              "#PBS -j oe\n"
              "set -eu\n"
              "cd /home/me/runs\n"
              "/opt/agpt/bin/agpt launch --ppn 12 -- agpt train --config 2B.toml\n");
    EXPECT_EQ(job_script(submit_options("slurm")),
              "#!/bin/bash\n"
              "#SBATCH --job-name=agpt\n"
              "#SBATCH --nodes=2\n"
              "#SBATCH --time=00:30:00\n"
              "#SBATCH --partition=debug\n"
              "#SBATCH --account=AuroraGPT\n"
              "set -eu\n"
              "cd /home/me/runs\n"
              "/opt/agpt/bin/agpt launch --ppn 12 -- agpt train --config 2B.toml\n");
    SubmitOptions bad = submit_options("pbs");
    bad.walltime = "30m";
    EXPECT_EQ(error_of([&] { job_script(bad); }), "submit: -t '30m': expected a walltime HH:MM:SS");
    bad = submit_options("lsf");
    EXPECT_EQ(error_of([&] { job_script(bad); }),
              "submit: --scheduler 'lsf': expected pbs or slurm");
}

TEST(Submit, WritesTheScriptSubmitsOnlyWithQsubAndNeverOverwrites) {
    TempDir dir;
    SubmitOptions o = submit_options("pbs");
    o.script_path = (dir.path / "job.pbs").string();
    // No qsub on this PATH: written, not submitted.
    const Environment no_qsub{{"PATH", dir.path.string()}};
    EXPECT_NE(submit_job(o, no_qsub).find("qsub not found on PATH"), std::string::npos);
    std::ifstream in(o.script_path);
    const std::string written((std::istreambuf_iterator<char>(in)), {});
    EXPECT_EQ(written, job_script(o));
    EXPECT_EQ(error_of([&] { submit_job(o, no_qsub); }),
              "submit: " + o.script_path + " already exists; remove it or pass --script");
    // A fake qsub on PATH records what it was given.
    const fs::path bin = dir.path / "bin";
    fs::create_directories(bin);
    std::ofstream(bin / "qsub") << "#!/bin/sh\necho \"$1\" > " << (dir.path / "submitted").string()
                                << "\n";
    fs::permissions(bin / "qsub", fs::perms::owner_all);
    o.script_path = (dir.path / "job2.pbs").string();
    const std::string out = submit_job(o, {{"PATH", bin.string()}});
    EXPECT_NE(out.find("submitted with qsub"), std::string::npos) << out;
    std::ifstream rec(dir.path / "submitted");
    std::string line;
    std::getline(rec, line);
    EXPECT_EQ(line, o.script_path);
}

TEST(Doctor, DistributedReportNamesTheSchedulerAndTheLaunchLine) {
    const std::string r = distributed_report({{"SLURM_JOB_ID", "5"}, {"SLURM_NNODES", "2"}}, 32);
    EXPECT_EQ(r.rfind("mpi: ", 0), 0u) << r;
    EXPECT_NE(r.find("scheduler: slurm job 5 on 2 nodes"), std::string::npos) << r;
    EXPECT_NE(r.find("cores: 32 here; 1 rank per node × 32 OpenMP threads"), std::string::npos)
        << r;
    EXPECT_NE(r.find("would run: srun --nodes 2 --ntasks 2"), std::string::npos) << r;
    EXPECT_NE(distributed_report({}, 4).find("scheduler: none"), std::string::npos);
}

}  // namespace
}  // namespace agpt
