#include "dist/launcher.h"

#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "core/error.h"
#include "dist/communicator.h"

extern char** environ;

namespace agpt {

namespace fs = std::filesystem;

Environment current_environment() {
    Environment env;
    for (char** e = environ; e && *e; e++) {
        const std::string kv = *e;
        const auto eq = kv.find('=');
        if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    return env;
}

int hardware_cores() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
}

namespace {

std::string get(const Environment& env, const std::string& key) {
    const auto it = env.find(key);
    return it == env.end() ? std::string() : it->second;
}

int positive_int(const std::string& text, const std::string& what) {
    try {
        std::size_t used = 0;
        const int v = std::stoi(text, &used);
        if (used == text.size() && v > 0) return v;
    } catch (const std::exception&) {
    }
    fail("{} = '{}': expected a positive integer", what, text);
}

std::vector<std::string> unique_hosts(const std::string& nodefile) {
    std::ifstream in(nodefile);
    if (!in) fail("PBS_NODEFILE {}: cannot open", nodefile);
    std::vector<std::string> hosts;
    std::set<std::string> seen;
    for (std::string line; std::getline(in, line);) {
        line.erase(0, line.find_first_not_of(" \t"));
        line.erase(line.find_last_not_of(" \t\r") + 1);
        if (!line.empty() && seen.insert(line).second) hosts.push_back(line);
    }
    if (hosts.empty()) fail("PBS_NODEFILE {}: no host names in it", nodefile);
    return hosts;
}

// "0-3:4-7" → {"0-3", "4-7"}, each a core or a range of cores.
std::vector<std::string> cpu_bind_list(const std::string& list) {
    static const std::regex item("[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*");
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (true) {
        const auto end = list.find(':', pos);
        out.push_back(list.substr(pos, end - pos));
        if (!std::regex_match(out.back(), item))
            fail("--cpu-bind {}: expected 'depth' or core lists per rank like 0-3:4-7", list);
        if (end == std::string::npos) break;
        pos = end + 1;
    }
    return out;
}

// Variables every rank must see: how many threads, where programs and libraries are, and the
// program's own settings.
std::vector<std::string> forwarded_variables(const Environment& env) {
    std::vector<std::string> vars{"OMP_NUM_THREADS"};
    // CUDA_VISIBLE_DEVICES: the GPUs each node's ranks choose from by local rank (one each).
    for (const char* v : {"PATH", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES"})
        if (env.count(v)) vars.emplace_back(v);
    for (const auto& [k, v] : env)
        if (k.rfind("AGPT_", 0) == 0 || k.rfind("NCCL_", 0) == 0) vars.push_back(k);
    return vars;
}

}  // namespace

SchedulerJob detect_scheduler(const Environment& env) {
    SchedulerJob job;
    if (!get(env, "PBS_JOBID").empty()) {
        job.scheduler = "pbs";
        job.job_id = get(env, "PBS_JOBID");
        job.nodefile = get(env, "PBS_NODEFILE");
        if (job.nodefile.empty())
            fail("PBS job {}: PBS_NODEFILE is not set; run inside the job's shell", job.job_id);
        job.hosts = unique_hosts(job.nodefile);
        job.nodes = static_cast<int>(job.hosts.size());
    } else if (!get(env, "SLURM_JOB_ID").empty()) {
        job.scheduler = "slurm";
        job.job_id = get(env, "SLURM_JOB_ID");
        const std::string key = env.count("SLURM_JOB_NUM_NODES") ? "SLURM_JOB_NUM_NODES"
                                : env.count("SLURM_NNODES")      ? "SLURM_NNODES"
                                                                 : "";
        job.nodes = key.empty() ? 1 : positive_int(get(env, key), key);
        if (!get(env, "SLURM_NODELIST").empty()) job.hosts = {get(env, "SLURM_NODELIST")};
    }
    return job;
}

LaunchPlan plan_launch(const LaunchOptions& o, const Environment& env, int cores_per_node) {
    if (o.command.empty()) fail("launch: no command after '--' (e.g. -- agpt train ...)");
    if (o.ranks == 0 || o.ranks < -1) fail("launch: -n {} must be positive", o.ranks);
    if (o.ranks_per_node == 0 || o.ranks_per_node < -1)
        fail("launch: --ppn {} must be positive", o.ranks_per_node);
    LaunchPlan plan;
    plan.job = detect_scheduler(env);
    std::string hostfile = o.hostfile.empty() ? plan.job.nodefile : o.hostfile;
    if (!o.hostfile.empty() && !fs::is_regular_file(o.hostfile))
        fail("launch: --hostfile {}: no such file", o.hostfile);
    const bool local = plan.job.scheduler == "local" && o.hostfile.empty();
    if (local) {
        plan.ranks = o.ranks > 0 ? o.ranks : (o.ranks_per_node > 0 ? o.ranks_per_node : 1);
        plan.ranks_per_node = plan.ranks;
    } else {
        const int nodes = plan.job.scheduler == "local"
                              ? static_cast<int>(unique_hosts(hostfile).size())
                              : plan.job.nodes;
        plan.ranks_per_node = o.ranks_per_node > 0 ? o.ranks_per_node
                              : o.ranks > 0        ? (o.ranks + nodes - 1) / nodes
                                                   : 1;
        plan.ranks = o.ranks > 0 ? o.ranks : nodes * plan.ranks_per_node;
    }
    if (plan.ranks_per_node > plan.ranks)
        fail("launch: --ppn {} is more than the {} ranks", plan.ranks_per_node, plan.ranks);
    plan.threads_per_rank = std::max(1, cores_per_node / plan.ranks_per_node);
    const std::string threads = std::to_string(plan.threads_per_rank);
    std::vector<std::string> binding;
    if (o.cpu_bind == "depth" || o.cpu_bind.empty()) {
    } else {
        binding = cpu_bind_list(o.cpu_bind);
        if (static_cast<int>(binding.size()) != plan.ranks_per_node)
            fail("--cpu-bind {}: {} core lists for {} ranks per node", o.cpu_bind, binding.size(),
                 plan.ranks_per_node);
    }

    auto& a = plan.argv;
    if (plan.job.scheduler == "slurm") {
        a = {"srun",
             "--nodes",
             std::to_string(plan.job.nodes),
             "--ntasks",
             std::to_string(plan.ranks),
             "--ntasks-per-node",
             std::to_string(plan.ranks_per_node),
             "--cpus-per-task",
             threads};
        if (o.cpu_bind == "depth") a.emplace_back("--cpu-bind=cores");
        if (!binding.empty()) {
            std::string list;
            for (const auto& b : binding) list += (list.empty() ? "" : ",") + b;
            a.push_back("--cpu-bind=map_cpu:" + list);
        }
        a.push_back("--export=ALL,OMP_NUM_THREADS=" + threads);
    } else {
        a = {"mpirun", "-np", std::to_string(plan.ranks)};
        if (!local) {
            a.insert(a.end(), {"--hostfile", hostfile, "--map-by",
                               fmt::format("ppr:{}:node{}", plan.ranks_per_node,
                                           o.cpu_bind == "depth" ? ":PE=" + threads : "")});
        } else if (o.cpu_bind == "depth") {
            a.insert(a.end(), {"--map-by", "slot:PE=" + threads});
        }
        if (o.cpu_bind.empty()) a.insert(a.end(), {"--bind-to", "none"});
        if (o.cpu_bind == "depth") a.insert(a.end(), {"--bind-to", "core"});
        if (!binding.empty()) {
            std::string list;
            for (const auto& b : binding) list += (list.empty() ? "" : ",") + b;
            a.insert(a.end(), {"--cpu-set", list, "--bind-to", "core"});
        }
        a.insert(a.end(), {"-x", "OMP_NUM_THREADS=" + threads});
        for (const auto& v : forwarded_variables(env))
            if (v != "OMP_NUM_THREADS") a.insert(a.end(), {"-x", v});
    }
    a.insert(a.end(), o.command.begin(), o.command.end());
    return plan;
}

std::string shell_command(const std::vector<std::string>& argv) {
    static const std::regex plain("[A-Za-z0-9_@%+=:,./-]+");
    std::string out;
    for (const auto& w : argv) {
        if (!out.empty()) out += ' ';
        if (!w.empty() && std::regex_match(w, plain)) {
            out += w;
            continue;
        }
        out += '\'';
        for (char c : w) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
        out += '\'';
    }
    return out;
}

int run_command(const std::vector<std::string>& argv) {
    if (argv.empty()) fail("run: empty command");
    std::vector<char*> args;
    for (const auto& w : argv) args.push_back(const_cast<char*>(w.c_str()));
    args.push_back(nullptr);
    const pid_t pid = fork();
    if (pid < 0) fail("{}: cannot start: {}", argv[0], std::strerror(errno));
    if (pid == 0) {
        execvp(args[0], args.data());
        std::fprintf(stderr, "agpt: error: %s: cannot run: %s\n", args[0], std::strerror(errno));
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) fail("{}: wait failed: {}", argv[0], std::strerror(errno));
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

std::string find_on_path(const std::string& program, const Environment& env) {
    const std::string path = get(env, "PATH");
    std::size_t pos = 0;
    while (pos <= path.size()) {
        const auto end = path.find(':', pos);
        const std::string dir = path.substr(pos, end - pos);
        const fs::path p = fs::path(dir.empty() ? "." : dir) / program;
        if (::access(p.c_str(), X_OK) == 0 && fs::is_regular_file(p)) return p.string();
        if (end == std::string::npos) break;
        pos = end + 1;
    }
    return "";
}

std::string job_script(const SubmitOptions& o) {
    if (o.scheduler != "pbs" && o.scheduler != "slurm")
        fail("submit: --scheduler '{}': expected pbs or slurm", o.scheduler);
    if (o.nodes < 1) fail("submit: -N {} must be positive", o.nodes);
    if (o.queue.empty()) fail("submit: -q QUEUE is required");
    if (!std::regex_match(o.walltime, std::regex("[0-9]+:[0-5][0-9]:[0-5][0-9]")))
        fail("submit: -t '{}': expected a walltime HH:MM:SS", o.walltime);
    if (o.command.empty()) fail("submit: no command after '--' (e.g. -- agpt train ...)");
    std::vector<std::string> launch{o.agpt_path.empty() ? "agpt" : o.agpt_path, "launch"};
    if (o.ranks_per_node > 0)
        launch.insert(launch.end(), {"--ppn", std::to_string(o.ranks_per_node)});
    launch.push_back("--");
    launch.insert(launch.end(), o.command.begin(), o.command.end());
    std::string s = "#!/bin/bash\n";
    if (o.scheduler == "pbs") {
        s += fmt::format("#PBS -N {}\n#PBS -l select={}\n#PBS -l walltime={}\n#PBS -q {}\n",
                         o.job_name, o.nodes, o.walltime, o.queue);
        if (!o.account.empty()) s += fmt::format("#PBS -A {}\n", o.account);
        s += "#PBS -j oe\n";
    } else {
        s += fmt::format(
            "#SBATCH --job-name={}\n#SBATCH --nodes={}\n#SBATCH --time={}\n#SBATCH "
            "--partition={}\n",
            o.job_name, o.nodes, o.walltime, o.queue);
        if (!o.account.empty()) s += fmt::format("#SBATCH --account={}\n", o.account);
    }
    s += "set -eu\n";
    if (!o.workdir.empty()) s += "cd " + shell_command({o.workdir}) + "\n";
    s += shell_command(launch) + "\n";
    return s;
}

std::string submit_job(const SubmitOptions& o, const Environment& env) {
    const std::string text = job_script(o);
    const std::string path =
        o.script_path.empty() ? "agpt-" + o.job_name + (o.scheduler == "pbs" ? ".pbs" : ".sbatch")
                              : o.script_path;
    if (fs::exists(path)) fail("submit: {} already exists; remove it or pass --script", path);
    {
        std::ofstream out(path);
        out << text;
        if (!out.flush()) fail("submit: {}: write failed", path);
    }
    fs::permissions(path, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
    std::string report = fmt::format("wrote {}\n", path);
    const std::string submitter = o.scheduler == "pbs" ? "qsub" : "sbatch";
    if (o.no_submit)
        return report + fmt::format("not submitted (--no-submit): {} {}\n", submitter, path);
    const std::string program = find_on_path(submitter, env);
    if (program.empty())
        return report +
               fmt::format("{} not found on PATH: submit it on a login node with `{} {}`\n",
                           submitter, submitter, path);
    const int rc = run_command({program, path});
    if (rc != 0) fail("submit: `{} {}` exited with status {}", submitter, path, rc);
    return report + fmt::format("submitted with {}\n", submitter);
}

std::string distributed_report(const Environment& env, int cores) {
    std::string s;
    s += fmt::format("mpi: {}", mpi_available() ? "compiled in (OpenMPI)" : "not compiled in");
    LaunchOptions o;
    o.command = {"agpt", "train"};
    s += fmt::format("; mpirun {}; srun {}\n",
                     find_on_path("mpirun", env).empty() ? "not found" : "on PATH",
                     find_on_path("srun", env).empty() ? "not found" : "on PATH");
    try {
        const LaunchPlan plan = plan_launch(o, env, cores);
        const SchedulerJob& job = plan.job;
        if (job.scheduler == "local")
            s += "scheduler: none (no PBS_JOBID or SLURM_JOB_ID): local mpirun\n";
        else
            s += fmt::format("scheduler: {} job {} on {} node{}\n", job.scheduler, job.job_id,
                             job.nodes, job.nodes == 1 ? "" : "s");
        s += fmt::format("  cores: {} here; {} rank{} per node × {} OpenMP thread{}\n", cores,
                         plan.ranks_per_node, plan.ranks_per_node == 1 ? "" : "s",
                         plan.threads_per_rank, plan.threads_per_rank == 1 ? "" : "s");
        s += "  `agpt launch -- agpt train` would run: " + shell_command(plan.argv) + "\n";
    } catch (const Error& e) {
        s += fmt::format("scheduler: {}\n", e.what());
    }
    return s;
}

}  // namespace agpt
