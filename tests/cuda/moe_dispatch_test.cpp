// MoE dispatch against the CPU on the same routing: the counting-sort plan (exactly equal, load
// counts included), gather and combine forward and backward, and the per-expert grouped GEMMs
// forward and backward (one expert without rows, which must stay untouched).
#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "kernels/cpu/moe_dispatch.h"
#include "kernels/cuda/moe_dispatch.h"

namespace agpt::cuda::test {
namespace {

// k distinct experts per token out of the first E-1 (expert E-1 gets no rows).
std::vector<int> random_experts(int N, int k, int E, Rng& rng) {
    std::vector<int> experts(static_cast<std::size_t>(N) * k), order(E - 1);
    for (int n = 0; n < N; n++) {
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng);
        std::copy_n(order.begin(), k, experts.begin() + static_cast<long>(n) * k);
    }
    return experts;
}

struct HostPlan {
    std::vector<int> offsets, row_token, slot_row;
    cpu::MoePlan plan;
    HostPlan(const std::vector<int>& experts, int N, int k, int E)
        : offsets(E + 1), row_token(experts.size()), slot_row(experts.size()) {
        plan.n_experts = E;
        plan.offsets = offsets.data();
        plan.row_token = row_token.data();
        plan.slot_row = slot_row.data();
        cpu::moe_plan(plan, experts.data(), N, k, E);
    }
};

struct DevicePlan {
    DeviceBuffer<int> offsets, row_token, slot_row;
    cpu::MoePlan plan;
    DevicePlan(int M, int E) : offsets(E + 1), row_token(M), slot_row(M) {
        offsets.fill_bytes(0xFF);
        row_token.fill_bytes(0xFF);
        slot_row.fill_bytes(0xFF);
        plan.n_experts = E;
        plan.offsets = offsets.data();
        plan.row_token = row_token.data();
        plan.slot_row = slot_row.data();
    }
};

std::vector<int> download_ints(const DeviceBuffer<int>& d) {
    std::vector<int> h(d.size());
    AGPT_CUDA_CHECK(cudaDeviceSynchronize());
    d.download(h.data());
    return h;
}

TEST(CudaMoeDispatch, PlanMatchesCpu) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        int N, k, E;
    };
    // 300·3 assignments: more than one per thread of the plan's block.
    const Case cases[] = {{29, 3, 5}, {300, 3, 9}, {7, 1, 2}};
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(3200 + case_id++);
        const std::string tag =
            " N" + std::to_string(c.N) + " k" + std::to_string(c.k) + " E" + std::to_string(c.E);
        const int M = c.N * c.k;
        const auto experts = random_experts(c.N, c.k, c.E, rng);
        HostPlan ref(experts, c.N, c.k, c.E);
        DevicePlan dev(M, c.E);
        DeviceBuffer<int> d_experts = upload(experts);
        std::vector<double> load0(c.E, 5.0);
        DeviceBuffer<double> d_load = upload(load0);
        cuda::moe_plan(dev.plan, d_experts.data(), c.N, c.k, d_load.data());
        EXPECT_EQ(download_ints(dev.offsets), ref.offsets) << "offsets" << tag;
        EXPECT_EQ(download_ints(dev.row_token), ref.row_token) << "row_token" << tag;
        EXPECT_EQ(download_ints(dev.slot_row), ref.slot_row) << "slot_row" << tag;
        std::vector<double> load(c.E);
        d_load.download(load.data());
        for (int e = 0; e < c.E; e++)
            EXPECT_EQ(load[e], 5.0 + ref.offsets[e + 1] - ref.offsets[e]) << "load" << tag;
    }
}

template <typename T>
void check_dispatch(double tol, uint64_t seed) {
    AGPT_REQUIRE_CUDA_DEVICE();
    struct Case {
        int N, k, E, D, F;
    };
    const Case cases[] = {{29, 3, 5, 24, 16}, {11, 2, 4, 40, 8}};
    int case_id = 0;
    for (const Case& c : cases) {
        Rng rng(seed + case_id++);
        const std::string tag = " N" + std::to_string(c.N) + " k" + std::to_string(c.k) + " E" +
                                std::to_string(c.E) + " D" + std::to_string(c.D);
        const int M = c.N * c.k, D = c.D, F = c.F, E = c.E;
        const std::size_t ND = static_cast<std::size_t>(c.N) * D,
                          MD = static_cast<std::size_t>(M) * D;
        const auto experts = random_experts(c.N, c.k, E, rng);
        HostPlan ref(experts, c.N, c.k, E);
        DevicePlan dev(M, E);
        DeviceBuffer<int> d_experts = upload(experts);
        cuda::moe_plan(dev.plan, d_experts.data(), c.N, c.k, nullptr);
        const auto x = representable<T>(random_floats(ND, rng));
        const auto gates = random_floats(M, rng, 0.1f, 1.0f);
        const auto out0 = representable<T>(random_floats(ND, rng));
        const auto ys = representable<T>(random_floats(MD, rng));
        const auto dout = representable<T>(random_floats(ND, rng));
        const auto dgates0 = random_floats(M, rng);

        // gather, gather backward
        std::vector<float> xs(MD), dx = out0;
        cpu::moe_gather<float>(xs.data(), x.data(), ref.plan, c.N, c.k, D);
        cpu::moe_gather_backward<float>(dx.data(), ys.data(), ref.plan, c.N, c.k, D);
        Dev<T> d_x(x), d_dx(out0), d_ys(ys), d_dout(dout), d_out(out0);
        auto d_xs = Dev<T>::poisoned(MD);
        cuda::moe_gather<T>(d_xs.ptr(), d_x.ptr(), dev.plan, c.N, c.k, D);
        expect_close("moe_gather" + tag, d_xs.get(), xs, tol);
        cuda::moe_gather_backward<T>(d_dx.ptr(), d_ys.ptr(), dev.plan, c.N, c.k, D);
        expect_close("moe_gather_backward" + tag, d_dx.get(), dx, tol);

        // combine, combine backward
        std::vector<float> out = out0, dys(MD), dgates = dgates0;
        cpu::moe_combine<float>(out.data(), ys.data(), gates.data(), ref.plan, c.N, c.k, D);
        cpu::moe_combine_backward<float>(dys.data(), dgates.data(), dout.data(), ys.data(),
                                         gates.data(), ref.plan, c.N, c.k, D);
        Dev<float> d_gates(gates), d_dgates(dgates0);
        auto d_dys = Dev<T>::poisoned(MD);
        cuda::moe_combine<T>(d_out.ptr(), d_ys.ptr(), d_gates.ptr(), dev.plan, c.N, c.k, D);
        expect_close("moe_combine" + tag, d_out.get(), out, tol);
        cuda::moe_combine_backward<T>(d_dys.ptr(), d_dgates.ptr(), d_dout.ptr(), d_ys.ptr(),
                                      d_gates.ptr(), dev.plan, c.N, c.k, D);
        expect_close("moe_combine_backward dys" + tag, d_dys.get(), dys, tol);
        expect_close("moe_combine_backward dgates" + tag, d_dgates.get(), dgates, tol);

        // grouped GEMMs: xs (M,D) · w[e] (F,D)ᵀ into the left half of rows of 2F; backward.
        const auto w = representable<T>(random_floats(static_cast<std::size_t>(E) * F * D, rng));
        const auto dh = representable<T>(random_floats(static_cast<std::size_t>(M) * 2 * F, rng));
        const auto dxs0 = representable<T>(random_floats(MD, rng));
        const auto dw0 = random_floats(w.size(), rng);
        std::vector<float> h(static_cast<std::size_t>(M) * 2 * F, 0.0f), dxs = dxs0, dw = dw0;
        cpu::grouped_matmul_forward<float>(h.data(), 2 * F, xs.data(), w.data(), ref.plan, D, F);
        cpu::grouped_matmul_backward<float>(dxs.data(), dw.data(), dh.data(), 2 * F, xs.data(),
                                            w.data(), ref.plan, D, F);
        Blas blas;
        Dev<T> d_w(w), d_dh(dh), d_dxs(dxs0), d_h(std::vector<float>(h.size(), 0.0f));
        Dev<float> d_dw(dw0);
        grouped_matmul_forward<T>(blas, d_h.ptr(), 2 * F, d_xs.ptr(), d_w.ptr(), ref.offsets.data(),
                                  E, D, F);
        expect_close("grouped_matmul_forward" + tag, d_h.get(), h, tol);
        grouped_matmul_backward<T, float>(blas, d_dxs.ptr(), d_dw.ptr(), d_dh.ptr(), 2 * F,
                                          d_xs.ptr(), d_w.ptr(), ref.offsets.data(), E, D, F);
        expect_close("grouped_matmul_backward dinp" + tag, d_dxs.get(), dxs, tol);
        const auto got_dw = d_dw.get();
        expect_close("grouped_matmul_backward dweight" + tag, got_dw, dw, tol);
        const std::size_t last = static_cast<std::size_t>(E - 1) * F * D;
        EXPECT_TRUE(std::equal(got_dw.begin() + static_cast<long>(last), got_dw.end(),
                               dw0.begin() + static_cast<long>(last)))
            << "an expert without rows got a weight gradient" << tag;
    }
}

TEST(CudaMoeDispatch, Fp32) {
    check_dispatch<float>(kTolFp32, 3300);
}
TEST(CudaMoeDispatch, Bf16) {
    check_dispatch<bf16>(kTolBf16, 3400);
}

}  // namespace
}  // namespace agpt::cuda::test
