// Embedding forward (a copy) and the deterministic backward (sorted, one owner per row)
// against the CPU: in fp32 both add each row's gradients in token order, so they agree to the
// bit; the test also repeats the backward to check run-to-run determinism.
#include <cstring>
#include <utility>

#include "cuda_test_util.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cuda/embedding.h"

namespace agpt::cuda::test {
namespace {

template <typename T>
void check_embedding(uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        int N, C, V;
    };
    // V much smaller than N: most rows receive many gradients.
    const Case cases[] = {{300, 64, 50}, {1000, 77, 7}, {5, 256, 1000}, {1, 8, 3}};
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(seed + case_id++);
        const std::size_t n = static_cast<std::size_t>(c.N) * c.C;
        const auto tokens = random_tokens(c.N, c.V, rng);
        const auto table =
            representable<T>(random_floats(static_cast<std::size_t>(c.V) * c.C, rng));
        const auto dout = representable<T>(random_floats(n, rng));
        const auto dtable0 = random_floats(table.size(), rng);
        const std::string tag =
            " N" + std::to_string(c.N) + " C" + std::to_string(c.C) + " V" + std::to_string(c.V);

        std::vector<float> out(n), dtable = dtable0;
        cpu::embedding_forward<float>(out.data(), tokens.data(), table.data(), c.N, c.C);
        cpu::embedding_backward<float>(dtable.data(), dout.data(), tokens.data(), c.N, c.C);

        DeviceBuffer<int32_t> d_tok = upload(tokens);
        Dev<T> d_table(table), d_dout(dout);
        auto d_out = Dev<T>::poisoned(n);
        embedding_forward<T>(d_out.ptr(), d_tok.data(), d_table.ptr(), c.N, c.C);
        expect_close("embedding_forward" + tag, d_out.get(), out, 0.0);

        Dev<float> d_dt(dtable0), d_dt2(dtable0);
        embedding_backward<T>(d_dt.ptr(), d_dout.ptr(), d_tok.data(), c.N, c.C);
        embedding_backward<T>(d_dt2.ptr(), d_dout.ptr(), d_tok.data(), c.N, c.C);
        const auto got = d_dt.get(), again = d_dt2.get();
        expect_close("embedding_backward (fp32 dtable)" + tag, got, dtable, 1e-7);
        EXPECT_EQ(0, std::memcmp(got.data(), again.data(), got.size() * sizeof(float)))
            << "embedding_backward is not run-to-run deterministic" << tag;
    }
}

// A table split in row ranges (the vocabulary-parallel embedding): each range's lookups and
// gradients against the CPU's _rows functions; tokens outside the range give zeros and no
// gradient, and the ranges' outputs sum to the whole table's.
template <typename T>
void check_embedding_rows(uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    const int N = 200, C = 40, V = 37;
    Rng rng(seed);
    const std::size_t n = static_cast<std::size_t>(N) * C;
    const auto tokens = random_tokens(N, V, rng);
    const auto table = representable<T>(random_floats(static_cast<std::size_t>(V) * C, rng));
    const auto dout = representable<T>(random_floats(n, rng));
    std::vector<float> whole(n), sum(n, 0.0f);
    cpu::embedding_forward<float>(whole.data(), tokens.data(), table.data(), N, C);
    DeviceBuffer<int32_t> d_tok = upload(tokens);
    Dev<T> d_dout(dout);
    for (const auto& [first, rows] : {std::pair{0, 13}, std::pair{13, 12}, std::pair{25, 12}}) {
        const std::string tag =
            " rows [" + std::to_string(first) + ", " + std::to_string(first + rows) + ")";
        const std::vector<float> part(table.begin() + static_cast<long>(first) * C,
                                      table.begin() + static_cast<long>(first + rows) * C);
        std::vector<float> out(n), dpart(part.size(), 0.5f);
        const std::vector<float> dpart0 = dpart;
        cpu::embedding_forward_rows<float>(out.data(), tokens.data(), part.data(), N, C, first,
                                           rows);
        cpu::embedding_backward_rows<float>(dpart.data(), dout.data(), tokens.data(), N, C, first,
                                            rows);
        Dev<T> d_part(part);
        auto d_out = Dev<T>::poisoned(n);
        embedding_forward_rows<T>(d_out.ptr(), d_tok.data(), d_part.ptr(), N, C, first, rows);
        const auto got = d_out.get();
        expect_close("embedding_forward_rows" + tag, got, out, 0.0);
        for (std::size_t i = 0; i < n; i++) sum[i] += got[i];
        Dev<float> d_dpart(dpart0);
        embedding_backward_rows<T>(d_dpart.ptr(), d_dout.ptr(), d_tok.data(), N, C, first, rows);
        expect_close("embedding_backward_rows" + tag, d_dpart.get(), dpart, 1e-7);
    }
    expect_close("embedding_forward_rows summed over the ranges", sum, whole, 0.0);
}

TEST(CudaEmbedding, RowRangesFp32) {
    check_embedding_rows<float>(3300);
}
TEST(CudaEmbedding, RowRangesBf16) {
    check_embedding_rows<bf16>(3400);
}

TEST(CudaEmbedding, Fp32) {
    check_embedding<float>(3100);
}
TEST(CudaEmbedding, Bf16) {
    check_embedding<bf16>(3200);
}

}  // namespace
}  // namespace agpt::cuda::test
