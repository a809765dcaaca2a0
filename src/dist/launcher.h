#pragma once
// `agpt launch`, `agpt submit` and the distributed part of `agpt doctor` (docs/distributed.md):
// what ezpz does for its users. Inside a PBS or Slurm job the launcher reads the job's nodes
// and builds the `mpirun` / `srun` line; outside one it runs `mpirun -np N` on this machine.
// Everything here is pure (environment in, command out) so tests can fake a scheduler.
//
// Intended usage:
//   LaunchPlan plan = plan_launch(options, current_environment(), hardware_cores());
//   std::puts(shell_command(plan.argv).c_str());
//   return options.dry_run ? 0 : run_command(plan.argv);
#include <map>
#include <string>
#include <vector>

namespace agpt {

using Environment = std::map<std::string, std::string>;

// The process environment as a map.
Environment current_environment();
// Cores this process may use (its affinity mask).
int hardware_cores();

// What the environment says about the batch scheduler.
struct SchedulerJob {
    std::string scheduler = "local";  // "pbs", "slurm" or "local"
    std::string job_id;               // PBS_JOBID / SLURM_JOB_ID
    std::vector<std::string> hosts;   // unique, in order (PBS_NODEFILE; Slurm: only a count)
    int nodes = 1;
    std::string nodefile;  // PBS_NODEFILE
};

// PBS when PBS_JOBID is set (its node list from PBS_NODEFILE), Slurm when SLURM_JOB_ID is set
// (SLURM_JOB_NUM_NODES / SLURM_NNODES nodes), else local. Throws Error naming the variable or
// file when the scheduler's variables are there but unusable.
SchedulerJob detect_scheduler(const Environment& env);

struct LaunchOptions {
    int ranks = -1;           // -n; -1: nodes × ranks per node
    int ranks_per_node = -1;  // --ppn; -1: 1 per node in a job, all ranks locally
    std::string hostfile;     // --hostfile; overrides PBS_NODEFILE
    std::string cpu_bind;     // "" (none), "depth" (threads_per_rank cores each), or a list
                              // of cores or core ranges per rank separated by ':' ("0-3:4-7")
    bool dry_run = false;
    std::vector<std::string> command;  // what every rank runs
};

struct LaunchPlan {
    SchedulerJob job;
    int ranks = 1, ranks_per_node = 1, threads_per_rank = 1;
    std::vector<std::string> argv;  // the launcher's command line
};

// Builds the launcher command: `mpirun` (OpenMPI) locally and under PBS, `srun` under Slurm.
// One OpenMP thread count per rank, cores_per_node / ranks_per_node (at least 1), set through
// OMP_NUM_THREADS, which the launcher forwards with PATH, LD_LIBRARY_PATH, CUDA_VISIBLE_DEVICES
// and every AGPT_* and NCCL_* variable. On GPUs each rank takes the device of its local rank
// (OMPI_COMM_WORLD_LOCAL_RANK from mpirun, SLURM_LOCALID from srun; dist/nccl_communicator.h):
// --ppn = GPUs per node binds one rank per GPU. Throws Error for an empty command, non-positive
// counts, more ranks per node than ranks, or a bad cpu-bind list.
LaunchPlan plan_launch(const LaunchOptions& options, const Environment& env, int cores_per_node);

// The argv as one line a POSIX shell reads back to the same words.
std::string shell_command(const std::vector<std::string>& argv);

// Runs argv (PATH lookup), waits, and returns its exit status (128 + signal when killed).
// Throws Error when it cannot be started.
int run_command(const std::vector<std::string>& argv);

// The path of `program` in the first of env's PATH folders that has it executable, or "".
std::string find_on_path(const std::string& program, const Environment& env);

struct SubmitOptions {
    std::string scheduler;  // pbs | slurm
    int nodes = 1;
    int ranks_per_node = -1;  // passed to `agpt launch --ppn`
    std::string queue, walltime = "01:00:00", account, job_name = "agpt";
    std::string script_path;  // "": agpt-<job_name>.pbs / .sbatch in the current folder
    std::string agpt_path;    // the agpt program the job runs `launch` with
    std::string workdir;      // the job changes into it first
    bool no_submit = false;
    std::vector<std::string> command;
};

// The job script's text: scheduler directives, cd into workdir, then `agpt launch -- command`.
// Throws Error naming the option for an unknown scheduler, nodes < 1, an empty queue or
// command, or a walltime that is not HH:MM:SS.
std::string job_script(const SubmitOptions& options);

// Writes the script (refusing to overwrite an existing file) and submits it with qsub/sbatch
// when that program is on PATH and no_submit is false. Returns what to print.
std::string submit_job(const SubmitOptions& options, const Environment& env);

// The `agpt doctor` lines about MPI, the scheduler, cores and threads, and the launch command
// that `agpt launch -- agpt train` would run here.
std::string distributed_report(const Environment& env, int cores);

}  // namespace agpt
