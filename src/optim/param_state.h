#pragma once
// Helpers the optimizers share: per-parameter slices of flat state buffers, runs of parameters
// that lie next to each other in memory (so an element-wise update is one parallel loop per run
// rather than one per tensor), and the naming of state tensors.
#include <cstddef>
#include <string>
#include <vector>

#include "optim/optimizer.h"

namespace agpt {

// A stretch of parameters whose values, gradients and state slices are all contiguous.
struct ParamRun {
    float* value;
    float* grad;
    std::size_t state_offset;  // into state buffers laid out in parameter order
    std::size_t n;
};

// State offsets are the running sum of numel() in the order given.
std::vector<ParamRun> contiguous_runs(const std::vector<OptimParam>& params);
std::size_t total_numel(const std::vector<OptimParam>& params);

// Appends one F32 tensor per parameter, "<prefix>.<param>.<suffix>", viewing buf (which holds
// every parameter's slice in order).
void append_param_state(std::vector<OptimStateTensor>& out, const std::string& prefix,
                        const std::vector<OptimParam>& params, std::vector<float>& buf,
                        const std::string& suffix);
void append_scalar(std::vector<OptimStateTensor>& out, const std::string& name, long* value);
void append_scalar(std::vector<OptimStateTensor>& out, const std::string& name, double* value);

// Every parameter routed to one optimizer.
void append_routing(std::vector<RoutingEntry>& out, const std::vector<OptimParam>& params,
                    const std::string& optimizer);

// Fails with a message naming the optimizer when lr_factor is negative or not finite.
void check_lr_factor(const std::string& optimizer, double lr_factor, long step);

}  // namespace agpt
