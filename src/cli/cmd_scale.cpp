#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "tools/scale.h"

namespace agpt::cli {

void add_scale_command(CLI::App& app, Action& action) {
    auto opt = std::make_shared<ScaleOptions>();
    auto* sub = app.add_subcommand(
        "scale", "Weak/strong scaling study over rank counts, and its projection to many nodes");
    sub->add_option("--ranks", opt->ranks, "Rank counts to run, e.g. 1,2,4")->delimiter(',');
    sub->add_option("--mode", opt->mode, "weak (local batch fixed) or strong (global fixed)");
    sub->add_option("--out", opt->out_dir, "Folder for the runs, scale.md and scale.png");
    sub->add_option("--threads", opt->threads_per_rank, "OpenMP threads per rank (0: cores/ranks)");
    sub->add_flag("--project", opt->project,
                  "Project weak scaling (DP, and the command's TP/EP) with an alpha-beta model");
    sub->add_option("--nodes", opt->nodes, "Node counts to project, e.g. 1,2,4,...,1024")
        ->delimiter(',');
    sub->add_option("--link-gbps", opt->link.gbps, "Per-node link bandwidth, Gbit/s");
    sub->add_option("--latency-us", opt->link.latency_us, "Per-message latency, microseconds");
    sub->add_option("--intra-gbps", opt->projection.intra_node.gbps,
                    "Link bandwidth inside a node (tensor parallelism), Gbit/s");
    sub->add_option("--intra-latency-us", opt->projection.intra_node.latency_us,
                    "Per-message latency inside a node, microseconds");
    sub->add_option("--activation-bytes", opt->projection.activation_bytes,
                    "Bytes per activation value sent by TP/EP (2: bf16)");
    sub->add_flag("--overlap", opt->projection.overlap,
                  "Hide the gradient all-reduce behind backward (2/3 of the compute time)");
    sub->add_option("--step-time", opt->compute_s,
                    "Compute seconds per step to project from (default: the smallest run's)");
    sub->add_option("command", opt->command, "-- agpt train ...")->required();
    sub->callback([opt, &action] {
        action = [opt] {
            std::fputs(scale_report(*opt, stdout).c_str(), stdout);
            return 0;
        };
    });
}

}  // namespace agpt::cli
