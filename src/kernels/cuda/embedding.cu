#include <cub/device/device_radix_sort.cuh>
#include <limits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/embedding.h"

namespace agpt::cuda {

namespace {

using namespace detail;

template <typename T>
__global__ void embedding_forward_kernel(T* out, const int32_t* tokens, const T* table, int C,
                                         long n, int first, int rows) {
    const long idx = static_cast<long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n) return;
    const long i = idx / C, c = idx % C;
    const long row = static_cast<long>(tokens[i]) - first;
    out[idx] = row >= 0 && row < rows ? table[row * C + c] : from_float<T>(0.0f);
}

__global__ void iota_kernel(int32_t* v, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) v[i] = i;
}

// Block b looks at sorted position b: if it starts a run of equal tokens, it adds that run's
// gradient rows (positions ascending: the sort is stable) into the token's row, column by
// column, starting from the row's current value, as the CPU loop does. Tokens outside the
// table's rows [first, first + rows) are skipped.
template <typename T>
__global__ void embedding_backward_kernel(float* dtable, const T* dout, const int32_t* sorted_tok,
                                          const int32_t* sorted_pos, int N, int C, int first,
                                          int rows) {
    const int start = blockIdx.x;
    const int32_t tok = sorted_tok[start];
    if (start > 0 && sorted_tok[start - 1] == tok) return;
    const long row = static_cast<long>(tok) - first;
    if (row < 0 || row >= rows) return;
    int end = start + 1;
    while (end < N && sorted_tok[end] == tok) ++end;
    float* d = dtable + row * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = d[c];
        for (int k = start; k < end; ++k)
            acc += to_float(dout[static_cast<long>(sorted_pos[k]) * C + c]);
        d[c] = acc;
    }
}

}  // namespace

template <typename T>
void embedding_forward(T* out, const int32_t* tokens, const T* table, int N, int C,
                       cudaStream_t stream) {
    embedding_forward_rows<T>(out, tokens, table, N, C, 0, std::numeric_limits<int>::max(), stream);
}

template <typename T>
void embedding_backward(float* dtable, const T* dout, const int32_t* tokens, int N, int C,
                        cudaStream_t stream) {
    embedding_backward_rows<T>(dtable, dout, tokens, N, C, 0, std::numeric_limits<int>::max(),
                               stream);
}

template <typename T>
void embedding_forward_rows(T* out, const int32_t* tokens, const T* table, int N, int C, int first,
                            int rows, cudaStream_t stream) {
    const long n = static_cast<long>(N) * C;
    if (n <= 0) return;
    embedding_forward_kernel<T>
        <<<ceil_div(n, 256), 256, 0, stream>>>(out, tokens, table, C, n, first, rows);
    AGPT_CUDA_CHECK_LAUNCH();
}

template <typename T>
void embedding_backward_rows(float* dtable, const T* dout, const int32_t* tokens, int N, int C,
                             int first, int rows, cudaStream_t stream) {
    if (N <= 0 || C <= 0) return;
    std::size_t sort_bytes = 0;
    AGPT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
        nullptr, sort_bytes, static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr),
        static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), N, 0, 32, stream));
    // Three int arrays of N, then CUB's temporary storage, each 256-byte aligned.
    const std::size_t arr = ceil_div(sizeof(int32_t) * N, 256) * 256;
    StreamScratch scratch(3 * arr + sort_bytes, stream);
    int32_t* pos = scratch.as<int32_t>(0);
    int32_t* sorted_tok = scratch.as<int32_t>(arr);
    int32_t* sorted_pos = scratch.as<int32_t>(2 * arr);
    void* temp = scratch.as<char>(3 * arr);
    iota_kernel<<<ceil_div(N, 256), 256, 0, stream>>>(pos, N);
    AGPT_CUDA_CHECK_LAUNCH();
    AGPT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp, sort_bytes, tokens, sorted_tok, pos,
                                                    sorted_pos, N, 0, 32, stream));
    embedding_backward_kernel<T>
        <<<N, 256, 0, stream>>>(dtable, dout, sorted_tok, sorted_pos, N, C, first, rows);
    AGPT_CUDA_CHECK_LAUNCH();
}

template void embedding_forward<float>(float*, const int32_t*, const float*, int, int,
                                       cudaStream_t);
template void embedding_forward<bf16>(bf16*, const int32_t*, const bf16*, int, int, cudaStream_t);
template void embedding_backward<float>(float*, const float*, const int32_t*, int, int,
                                        cudaStream_t);
template void embedding_backward<bf16>(float*, const bf16*, const int32_t*, int, int, cudaStream_t);
template void embedding_forward_rows<float>(float*, const int32_t*, const float*, int, int, int,
                                            int, cudaStream_t);
template void embedding_forward_rows<bf16>(bf16*, const int32_t*, const bf16*, int, int, int, int,
                                           cudaStream_t);
template void embedding_backward_rows<float>(float*, const float*, const int32_t*, int, int, int,
                                             int, cudaStream_t);
template void embedding_backward_rows<bf16>(float*, const bf16*, const int32_t*, int, int, int, int,
                                            cudaStream_t);

}  // namespace agpt::cuda
