#pragma once
#include <cstddef>
// One AdamW step over a flat slice, with torch.optim.AdamW's exact arithmetic (decoupled weight
// decay applied first, bias corrections on m and v, eps added after the square root).
namespace agpt::cpu {

struct AdamWStep {
    double lr;
    double beta1;
    double beta2;
    double eps;
    double weight_decay;
    long step;  // 1 for the first update
};

template <typename T>
void adamw_update(T* param, const T* grad, T* m, T* v, std::size_t n, const AdamWStep& s);

}  // namespace agpt::cpu
