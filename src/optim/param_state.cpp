#include "optim/param_state.h"

#include <cmath>
#include <cstdint>

#include "core/error.h"

namespace agpt {

std::vector<ParamRun> contiguous_runs(const std::vector<OptimParam>& params) {
    std::vector<ParamRun> runs;
    std::size_t off = 0;
    for (const auto& p : params) {
        const std::size_t n = p.numel();
        if (n == 0) continue;
        if (!runs.empty()) {
            ParamRun& r = runs.back();
            if (r.value + r.n == p.value && r.grad + r.n == p.grad && r.state_offset + r.n == off) {
                r.n += n;
                off += n;
                continue;
            }
        }
        runs.push_back({p.value, p.grad, off, n});
        off += n;
    }
    return runs;
}

std::size_t total_numel(const std::vector<OptimParam>& params) {
    std::size_t n = 0;
    for (const auto& p : params) n += p.numel();
    return n;
}

void append_param_state(std::vector<OptimStateTensor>& out, const std::string& prefix,
                        const std::vector<OptimParam>& params, std::vector<float>& buf,
                        const std::string& suffix) {
    std::size_t off = 0;
    for (const auto& p : params) {
        std::vector<int64_t> shape(p.shape.begin(), p.shape.end());
        out.push_back({prefix + "." + p.name + "." + suffix, SafetensorsDtype::F32,
                       std::move(shape), buf.data() + off});
        off += p.numel();
    }
}

void append_scalar(std::vector<OptimStateTensor>& out, const std::string& name, long* value) {
    static_assert(sizeof(long) == sizeof(int64_t), "state scalars are stored as I64");
    out.push_back({name, SafetensorsDtype::I64, {}, value});
}

void append_scalar(std::vector<OptimStateTensor>& out, const std::string& name, double* value) {
    out.push_back({name, SafetensorsDtype::F64, {}, value});
}

void append_routing(std::vector<RoutingEntry>& out, const std::vector<OptimParam>& params,
                    const std::string& optimizer) {
    for (const auto& p : params) out.push_back({p.name, p.role, p.shape, optimizer});
}

void check_lr_factor(const std::string& optimizer, double lr_factor, long step) {
    if (!std::isfinite(lr_factor) || lr_factor < 0.0)
        fail("{}: invalid learning-rate factor {} at step {}", optimizer, lr_factor, step);
}

}  // namespace agpt
