#include "kernels/cpu/softcap.h"

namespace agpt::cpu {

template <typename T>
void softcap_forward(T* x, long n, T cap) {
    if (!(cap > T(0))) return;
#pragma omp parallel for simd schedule(static) if (n > (1L << 16))
    for (long i = 0; i < n; i++) x[i] = softcap_vec(x[i], cap);
}

template void softcap_forward<float>(float*, long, float);
template void softcap_forward<double>(double*, long, double);

}  // namespace agpt::cpu
