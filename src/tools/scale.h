#pragma once
// `agpt scale`: a weak- or strong-scaling study over rank counts, and its projection to cluster
// scale with an alpha–beta model of the interconnect (docs/distributed.md states the formulas).
//
// Intended usage:
//   ScaleOptions o; o.ranks = {1, 2}; o.mode = "weak"; o.command = {"agpt", "train", ...};
//   std::vector<ScalePoint> measured = run_scale_study(o, stdout);
//   project_scaling(measured.front().step_time_s, projection_job_of(o.command), {1, 2, 64}, link);
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
// and 0 when p ≤ 1 or bytes ≤ 0 (no message is sent).
double all_reduce_seconds(double bytes, int p, const LinkModel& link);
double reduce_scatter_seconds(double bytes, int p, const LinkModel& link);
double all_to_all_seconds(double bytes, int p, const LinkModel& link);

struct ScalePoint {
    int ranks = 1;
    double tok_per_s_total = 0, tok_per_s_per_rank = 0, step_time_s = 0;
    double efficiency = 1.0;  // per-rank throughput against the smallest point's
};

// What the projection needs of a job, per node and step (projection_job_of).
struct ProjectionJob {
    double dense_gradient_bytes = 0;   // fp32 gradients of everything but the routed experts
    double expert_gradient_bytes = 0;  // fp32 gradients of all routed experts
    int n_layers = 0, n_moe_layers = 0, dim = 0, top_k = 0;
    double tokens_per_step = 0;  // local_batch_size × seq_len × accumulation steps
    int tensor_parallel = 1;     // parallelism.tensor_parallel_degree: ranks inside one node
    int expert_parallel = 1;     // parallelism.expert_parallel_degree: nodes per expert group
};

// How communication is costed besides the inter-node link (docs/distributed.md).
struct ProjectionModel {
    LinkModel intra_node{2400.0, 1.0};     // tensor parallelism's links inside a node
    double activation_bytes = 2.0;         // bytes per activation value sent (bf16)
    bool overlap = false;                  // gradient all-reduce hidden behind backward
    double backward_fraction = 2.0 / 3.0;  // of the compute time (2 of its 3 GEMM passes)
};

struct ProjectedPoint {
    int nodes = 1;
    double step_s = 0, dp_s = 0, dp_exposed_s = 0, tp_s = 0, ep_s = 0;
    double tok_per_s_per_node = 0, efficiency = 1.0;
};

// Weak scaling over nodes, each keeping compute_s of compute per step:
//   step(p) = compute_s + tp + ep + exposed(dp(p)), efficiency = step(smallest p) / step(p)
//   dp(p) = all_reduce(dense, p) + all_reduce(expert / EP, p / EP)       (inter-node link)
//   tp    = (4·layers + 1) · all_reduce(tokens·dim·activation_bytes, TP)  (intra-node link)
//   ep    = 4·moe_layers · all_to_all(tokens·top_k·dim·activation_bytes, EP)
//   exposed(x) = overlap ? max(0, x − backward_fraction·compute_s) : x
// Throws Error for an empty node list, a node count not a multiple of EP, or bad links.
std::vector<ProjectedPoint> project_scaling(double compute_s, const ProjectionJob& job,
                                            const std::vector<int>& nodes, const LinkModel& link,
                                            const ProjectionModel& model = {});
// Markdown table of a projection: one row per node count.
std::string projection_table(const std::vector<ProjectedPoint>& points);

struct ScaleOptions {
    std::vector<int> ranks;            // e.g. 1,2,4
    std::string mode = "weak";         // weak: local batch fixed; strong: global batch fixed
    std::vector<std::string> command;  // agpt train ... (the agpt path first)
    std::string out_dir = "scale";     // run folders, scale.md, scale.png
    int threads_per_rank = 0;          // 0: cores / ranks
    // --project: the weak-scaling projection to these node counts.
    bool project = false;
    std::vector<int> nodes;
    LinkModel link;
    ProjectionModel projection;
    double compute_s = 0;  // compute time per step; 0: the smallest measured run's step time
};

// The projection's view of the train command (its --config file and overrides): the flavor's
// parameters (its own vocabulary, as `agpt models` lists it) split into dense and routed-expert
// fp32 gradients, its layer shapes, tokens per step and the [parallelism] degrees.
ProjectionJob projection_job_of(const std::vector<std::string>& train_command);

// The whole `agpt scale`: the study (when ranks are given), then the projection (when asked),
// as the text to print.
std::string scale_report(const ScaleOptions& options, std::FILE* progress);

// Runs the command once per rank count under mpirun (weak: global batch = local × ranks;
// strong: local batch = global / ranks), reads each run's metrics and returns the median
// throughput over the logged steps after the first. Writes <out_dir>/scale.md and scale.png.
std::vector<ScalePoint> run_scale_study(const ScaleOptions& options, std::FILE* progress);

// Markdown table: ranks, tok/s total and per rank, step time, efficiency.
std::string scale_table(const std::vector<ScalePoint>& points);

}  // namespace agpt
