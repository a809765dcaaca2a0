#pragma once
// `agpt scale`: a weak- or strong-scaling study over rank counts, and its projection to cluster
// scale with an alpha–beta model of the interconnect (docs/distributed.md states the formulas).
//
// Intended usage:
//   ScaleOptions o; o.ranks = {1, 2}; o.mode = "weak"; o.command = {"agpt", "train", ...};
//   std::vector<ScalePoint> measured = run_scale_study(o, stdout);
//   project_weak_scaling(measured.front().step_time_s, gradient_bytes, {1, 2, 64}, link);
#include <cstdio>
#include <string>
#include <vector>

namespace agpt {

// The interconnect between nodes: per-node bandwidth and per-message latency.
struct LinkModel {
    double gbps = 200.0;      // Gbit/s per node, each direction
    double latency_us = 2.0;  // alpha
    double bytes_per_second() const { return gbps * 1e9 / 8.0; }
};

// Ring algorithms over p participants moving `bytes` (the whole buffer):
//   all-reduce      2(p−1)·α + 2(p−1)/p · bytes/β
//   reduce-scatter   (p−1)·α +  (p−1)/p · bytes/β   (all-gather the same)
//   all-to-all       (p−1)·α +  (p−1)/p · bytes/β   (bytes: what one rank sends in all)
double all_reduce_seconds(double bytes, int p, const LinkModel& link);
double reduce_scatter_seconds(double bytes, int p, const LinkModel& link);
double all_to_all_seconds(double bytes, int p, const LinkModel& link);

struct ScalePoint {
    int ranks = 1;  // measured: ranks; projected: nodes
    double tok_per_s_total = 0, tok_per_s_per_rank = 0, step_time_s = 0, comm_s = 0;
    double efficiency = 1.0;  // per-rank throughput against the smallest point's
};

// Weak scaling of data parallelism: every node keeps compute_s of work per step and then
// all-reduces the gradients across nodes (no overlap), step(p) = compute_s + all_reduce(p).
// Efficiency = step(smallest) / step(p). Throws Error for an empty or non-positive node list.
std::vector<ScalePoint> project_weak_scaling(double compute_s, double gradient_bytes,
                                             const std::vector<int>& nodes, const LinkModel& link);

struct ScaleOptions {
    std::vector<int> ranks;            // e.g. 1,2,4
    std::string mode = "weak";         // weak: local batch fixed; strong: global batch fixed
    std::vector<std::string> command;  // agpt train ... (the agpt path first)
    std::string out_dir = "scale";     // run folders, scale.md, scale.png
    int threads_per_rank = 0;          // 0: cores / ranks
    // --project: the DP weak-scaling projection to these node counts.
    bool project = false;
    std::vector<int> nodes;
    LinkModel link;
    double compute_s = 0;  // compute time per step; 0: the smallest measured run's step time
};

// Bytes of fp32 gradients the data-parallel all-reduce moves: 4 × the parameters of the
// flavor the train command names (its --config file and --model.* overrides; the flavor's own
// vocabulary, as `agpt models` lists it).
double gradient_bytes_of(const std::vector<std::string>& train_command);

// The whole `agpt scale`: the study (when ranks are given), then the projection (when asked),
// as the text to print.
std::string scale_report(const ScaleOptions& options, std::FILE* progress);

// Runs the command once per rank count under mpirun (weak: global batch = local × ranks;
// strong: local batch = global / ranks), reads each run's metrics and returns the median
// throughput over the logged steps after the first. Writes <out_dir>/scale.md and scale.png.
std::vector<ScalePoint> run_scale_study(const ScaleOptions& options, std::FILE* progress);

// Markdown table: ranks, tok/s total and per rank, step time, (comm time), efficiency.
std::string scale_table(const std::vector<ScalePoint>& points, const std::string& first_column,
                        bool with_comm);

}  // namespace agpt
