#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "dist/launcher.h"

namespace agpt::cli {

void add_launch_command(CLI::App& app, Action& action) {
    auto opt = std::make_shared<LaunchOptions>();
    auto* sub = app.add_subcommand(
        "launch", "Run a command on every rank: mpirun/srun built from PBS, Slurm or this machine");
    sub->add_option("-n,--np", opt->ranks, "Ranks in all (default: nodes × ranks per node)");
    sub->add_option("--ppn", opt->ranks_per_node, "Ranks per node (default: 1 in a job)");
    sub->add_option("--hostfile", opt->hostfile, "Hosts file (default: $PBS_NODEFILE in PBS)");
    sub->add_option("--cpu-bind", opt->cpu_bind,
                    "'depth' (each rank bound to its threads' cores) or core lists per rank, "
                    "e.g. 0-3:4-7");
    sub->add_flag("--dry-run", opt->dry_run, "Print the command and exit");
    sub->add_option("command", opt->command, "The command after '--', e.g. -- agpt train ...")
        ->required();
    sub->footer("Example: agpt launch -n 2 -- agpt train --training.steps 50");
    sub->callback([opt, &action] {
        action = [opt] {
            const LaunchPlan plan = plan_launch(*opt, current_environment(), hardware_cores());
            std::printf("%s\n", shell_command(plan.argv).c_str());
            std::fflush(stdout);
            return opt->dry_run ? 0 : run_command(plan.argv);
        };
    });
}

void add_submit_command(CLI::App& app, Action& action) {
    auto opt = std::make_shared<SubmitOptions>();
    auto* sub = app.add_subcommand(
        "submit", "Write a PBS or Slurm job script that runs `agpt launch`, and submit it");
    sub->add_option("--scheduler", opt->scheduler, "pbs or slurm")->required();
    sub->add_option("-N,--nodes", opt->nodes, "Nodes")->required();
    sub->add_option("-q,--queue", opt->queue, "Queue (PBS) or partition (Slurm)")->required();
    sub->add_option("-t,--time", opt->walltime, "Walltime HH:MM:SS (default 01:00:00)");
    sub->add_option("-A,--account", opt->account, "Project to charge");
    sub->add_option("--ppn", opt->ranks_per_node, "Ranks per node for `agpt launch`");
    sub->add_option("--name", opt->job_name, "Job name (default agpt)");
    sub->add_option("--script", opt->script_path,
                    "Job script to write (default agpt-NAME.pbs / .sbatch here)");
    sub->add_flag("--no-submit", opt->no_submit, "Write the script only");
    sub->add_option("command", opt->command, "The command after '--', e.g. -- agpt train ...")
        ->required();
    sub->callback([opt, &action] {
        action = [opt] {
            std::error_code ec;
            const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
            opt->agpt_path = ec ? "agpt" : self.string();
            opt->workdir = std::filesystem::current_path().string();
            std::fputs(submit_job(*opt, current_environment()).c_str(), stdout);
            return 0;
        };
    });
}

}  // namespace agpt::cli
