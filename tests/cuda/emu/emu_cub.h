#pragma once
// Stand-in for cub::DeviceRadixSort in the CPU emulation: a stable sort by key.
#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

namespace cub {
struct DeviceRadixSort {
    template <typename K, typename V>
    static cudaError_t SortPairs(void* temp, std::size_t& bytes, const K* keys_in, K* keys_out,
                                 const V* values_in, V* values_out, int n, int, int,
                                 cudaStream_t = nullptr) {
        if (!temp) {
            bytes = 16;
            return cudaSuccess;
        }
        std::vector<std::pair<K, V>> v(n);
        for (int i = 0; i < n; ++i) v[i] = {keys_in[i], values_in[i]};
        std::stable_sort(v.begin(), v.end(),
                         [](const auto& a, const auto& b) { return a.first < b.first; });
        for (int i = 0; i < n; ++i) {
            keys_out[i] = v[i].first;
            values_out[i] = v[i].second;
        }
        return cudaSuccess;
    }
};
}  // namespace cub
