// agpt plan: each part of the estimate against the real model's and optimizer's byte counts, and
// the total against the peak RSS of real training runs (in a child process).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/transformer.h"
#include "tools/plan.h"
#include "train/config.h"
#include "train/trainer.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

JobConfig job(const std::string& flavor, int B, int T, const std::string& optimizer = "AdamW") {
    return load_job_config("", {{"model.flavor", flavor},
                                {"training.local_batch_size", std::to_string(B)},
                                {"training.seq_len", std::to_string(T)},
                                {"optimizer.name", optimizer}});
}

const std::vector<std::string> kOptimizers = {
    "AdamW", "Muon", "Mano", "SophiaG", "SPAM", "Lion", "ScheduleFreeAdamW", "AdEMAMix"};

TEST(Plan, PartsEqualTheRealModelsByteCounts) {
    struct Case {
        std::string flavor;
        int B, T;
    };
    for (const Case& c : std::vector<Case>{{"tiny", 4, 32},
                                           {"tiny_kitchen_sink", 3, 20},
                                           {"small", 8, 256},
                                           {"small_qknorm_softcap", 2, 64},
                                           {"small_relu2", 2, 64},
                                           {"debugmodel", 4, 128},
                                           {"debugmodel", 1, 1},
                                           {"moe_tiny", 2, 24},
                                           {"moe_debug", 2, 64},
                                           {"moe_debug_dense", 2, 16}}) {
        SCOPED_TRACE(c.flavor + " " + std::to_string(c.B) + "x" + std::to_string(c.T));
        const JobConfig cfg = job(c.flavor, c.B, c.T);
        const MemoryPlan plan = plan_memory(cfg);
        Transformer model(plan.args, c.B, c.T);
        EXPECT_EQ(plan.params, plan.args.num_params());
        EXPECT_EQ(plan.active_params, plan.args.num_active_params());
        EXPECT_EQ(plan.param_bytes, model.params().size() * sizeof(float));
        EXPECT_EQ(plan.grad_bytes, model.grads().size() * sizeof(float));
        EXPECT_EQ(plan.activation_bytes, model.activation_bytes());
        EXPECT_EQ(plan.activation_bytes,
                  plan.saved_activation_bytes + plan.backward_buffer_bytes + plan.head_chunk_bytes);
        EXPECT_DOUBLE_EQ(plan.flops_per_token, plan.args.flops_per_token(c.T));
        EXPECT_EQ(plan.optimizer_bytes, make_model_optimizer(cfg, model)->state_bytes());
        EXPECT_EQ(plan.total_bytes, plan.param_bytes + plan.grad_bytes + plan.optimizer_bytes +
                                        plan.activation_bytes + plan.rope_bytes +
                                        plan.temporary_bytes + plan.runtime_bytes);
    }
}

TEST(Plan, OptimizerStateEqualsStateBytesOfEveryOptimizer) {
    for (const std::string flavor : {"tiny", "small_kitchen_sink", "debugmodel", "moe_tiny"}) {
        for (const std::string& name : kOptimizers) {
            SCOPED_TRACE(flavor + std::string(" ") + name);
            const JobConfig cfg = job(flavor, 1, 1, name);
            const MemoryPlan plan = plan_memory(cfg);
            Transformer model(plan.args, 1, 1);
            const auto opt = make_model_optimizer(cfg, model);
            EXPECT_EQ(plan.optimizer_bytes, opt->state_bytes());
            // Per optimizer: the parameters the routing gives it.
            for (const auto& part : plan.optimizer_parts) {
                long routed = 0;
                for (const auto& r : opt->describe_routing()) {
                    if (r.optimizer != part.optimizer) continue;
                    long n = 1;
                    for (int d : r.shape) n *= d;
                    routed += n;
                }
                EXPECT_EQ(part.params, routed) << part.optimizer;
            }
        }
    }
}

TEST(Plan, HugeFlavorsPlanWithoutAllocatingAndTheVerdictFollowsTheDevice) {
    const MemoryPlan plan = plan_memory(job("80B", 1, 8192, "Muon"), 80);
    EXPECT_GT(plan.params, 70'000'000'000L);
    EXPECT_EQ(plan.param_bytes, static_cast<std::size_t>(plan.params) * 4);
    EXPECT_EQ(plan.optimizer_parts.size(), 2u);
    EXPECT_FALSE(plan.fits);
    const MemoryPlan tiny = plan_memory(job("tiny", 1, 16), 1);
    EXPECT_TRUE(tiny.fits);
    EXPECT_TRUE(plan_memory(job("tiny", 1, 16)).fits);  // no device: nothing to refuse
    const std::string text = format_plan(plan);
    EXPECT_NE(text.find("does NOT fit in 80 GiB"), std::string::npos) << text;
    const nlohmann::json j = plan_json(plan);
    EXPECT_EQ(j["params"].get<long>(), plan.params);
    EXPECT_EQ(j["bytes"]["total"].get<std::size_t>(), plan.total_bytes);
    EXPECT_FALSE(j["fits"].get<bool>());
    EXPECT_THROW(plan_memory(job("tiny", 1, 16), -1), Error);
}

// The child half of the RSS check: trains the job named by AGPT_PLAN_RSS_JOB ("flavor B T") and
// writes its peak resident set in bytes to AGPT_PLAN_RSS_OUT. Skipped unless started that way.
TEST(PlanRssChild, Train) {
    const char* spec = std::getenv("AGPT_PLAN_RSS_JOB");
    const char* out = std::getenv("AGPT_PLAN_RSS_OUT");
    if (!spec || !out) GTEST_SKIP() << "run by Plan.TotalWithin15PercentOfPeakRss";
    std::istringstream in(spec);
    std::string flavor, dump;
    int B = 0, T = 0;
    in >> flavor >> B >> T >> dump;
    const JobConfig cfg = load_job_config("", {{"job.dump_folder", dump},
                                               {"job.name", flavor},
                                               {"model.flavor", flavor},
                                               {"training.local_batch_size", std::to_string(B)},
                                               {"training.seq_len", std::to_string(T)},
                                               {"training.steps", "3"},
                                               {"training.threads", "2"},
                                               {"validation.enable", "false"},
                                               {"sample.max_new_tokens", "0"}});
    train(cfg, nullptr);
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::ofstream(out) << static_cast<long>(usage.ru_maxrss) * 1024;
}

// A fresh process per run (this binary, running only PlanRssChild.Train), so that no other
// test's allocations count.
TEST(Plan, TotalWithin15PercentOfPeakRss) {
#if defined(__SANITIZE_ADDRESS__)
    GTEST_SKIP() << "AddressSanitizer's shadow memory and redzones are not in the plan";
#endif
    const fs::path self = fs::read_symlink("/proc/self/exe");
    const fs::path dir = fs::temp_directory_path() / "agpt_plan_rss_test";
    fs::remove_all(dir);
    fs::create_directories(dir);
    struct Case {
        std::string flavor;
        int B, T;
    };
    for (const Case& c :
         std::vector<Case>{{"tiny", 8, 128}, {"small", 8, 256}, {"small_kitchen_sink", 4, 256}}) {
        const fs::path out = dir / (c.flavor + ".rss");
        const std::string cmd = "AGPT_PLAN_RSS_JOB='" + c.flavor + " " + std::to_string(c.B) + " " +
                                std::to_string(c.T) + " " + (dir / "runs").string() +
                                "' AGPT_PLAN_RSS_OUT='" + out.string() + "' '" + self.string() +
                                "' --gtest_filter=PlanRssChild.Train > '" +
                                (dir / (c.flavor + ".log")).string() + "' 2>&1";
        ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
        long rss = 0;
        std::ifstream(out) >> rss;
        ASSERT_GT(rss, 0) << c.flavor;
        const MemoryPlan plan = plan_memory(job(c.flavor, c.B, c.T));
        const double ratio = static_cast<double>(plan.total_bytes) / static_cast<double>(rss);
        std::printf("plan %s %dx%d: estimate %.1f MiB, peak RSS %.1f MiB, ratio %.3f\n",
                    c.flavor.c_str(), c.B, c.T, static_cast<double>(plan.total_bytes) / (1 << 20),
                    static_cast<double>(rss) / (1 << 20), ratio);
        EXPECT_NEAR(ratio, 1.0, 0.15) << c.flavor;
    }
    fs::remove_all(dir);
}

}  // namespace
}  // namespace agpt
