#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/safetensors.h"
#include "model/hf_llama.h"
#include "model/transformer.h"
#include "train/checkpoint.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

std::unique_ptr<Optimizer> adamw_of(Transformer& model) {
    return make_optimizer(
        OptimizerSpec{},
        optim_params_from(model.param_views(), model.params().data(), model.grads().data()));
}

// Every state tensor's bytes, by name.
std::map<std::string, std::string> state_of(Optimizer& opt) {
    std::map<std::string, std::string> out;
    for (const auto& t : opt.state_tensors())
        out[t.name] = std::string(static_cast<const char*>(t.data), t.nbytes());
    return out;
}

struct Fixture {
    fs::path root;
    ModelArgs args;
    Transformer model;
    std::unique_ptr<Optimizer> owned;
    Optimizer& opt;
    explicit Fixture(const std::string& name)
        : root(fs::temp_directory_path() / ("agpt_ckpt_test_" + name)),
          args([] {
              ModelArgs a = find_flavor("tiny")->args;
              a.vocab_size = 40;
              return a;
          }()),
          model(args, 1, 4),
          owned(adamw_of(model)),
          opt(*owned) {
        fs::remove_all(root);
        model.init_weights("agpt", 1);
        // Distinct values in every state tensor; the step counter at 7.
        for (const auto& t : opt.state_tensors()) {
            if (t.dtype == SafetensorsDtype::F32) {
                auto* f = static_cast<float*>(t.data);
                for (std::size_t i = 0; i < t.numel(); i++)
                    f[i] = 0.001f * static_cast<float>((i + t.name.size()) % 97);
            } else if (t.dtype == SafetensorsDtype::I64) {
                *static_cast<int64_t*>(t.data) = 7;
            }
        }
    }
};

void flip_byte(const fs::path& p, std::size_t offset) {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5A);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(&c, 1);
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(Checkpoint, RoundTripIsBitExactAndUsesHuggingFaceNames) {
    Fixture a("roundtrip");
    const CheckpointStore store(a.root.string());
    store.save({12, 3, 45}, a.model, &a.opt, "[job]\n");
    EXPECT_EQ(store.steps(), std::vector<int>{12});

    Fixture b("roundtrip_other");
    b.model.init_weights("agpt", 99);
    auto opt = adamw_of(b.model);
    const TrainState st = store.load(12, b.model, opt.get());
    EXPECT_EQ(st.step, 12);
    EXPECT_EQ(st.loader_epoch, 3);
    EXPECT_EQ(st.loader_position, 45);
    EXPECT_EQ(b.model.params(), a.model.params());
    EXPECT_EQ(state_of(*opt), state_of(a.opt));
    EXPECT_EQ(opt->steps_taken(), 7);

    const SafetensorsFile st_file((a.root / "step-12" / "model.safetensors").string());
    EXPECT_TRUE(st_file.contains("model.layers.1.self_attn.q_proj.weight"));
    EXPECT_TRUE(st_file.contains("model.layers.0.mlp.gate_proj.weight"));
    EXPECT_TRUE(st_file.contains("lm_head.weight"));
    EXPECT_EQ(st_file.names().size(), a.model.param_views().size());
    EXPECT_THROW(hf_llama_name("layers.0.attention.bogus"), Error);
}

TEST(Checkpoint, CorruptionIsDetectedAndNamesTheFile) {
    Fixture a("corrupt");
    const CheckpointStore store(a.root.string());
    const fs::path dir = store.save({5, 0, 0}, a.model, &a.opt, "[job]\n");
    const fs::path model_file = dir / "model.safetensors";
    const auto size = fs::file_size(model_file);
    std::vector<float> before = a.model.params();

    flip_byte(model_file, size / 2);  // in the data
    std::string e = error_of([&] { store.load(5, a.model, &a.opt); });
    EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
    EXPECT_NE(e.find("checksum"), std::string::npos) << e;
    EXPECT_EQ(a.model.params(), before);  // untouched on failure
    flip_byte(model_file, size / 2);

    flip_byte(model_file, 3);  // in the header length
    e = error_of([&] { store.load(5, a.model, &a.opt); });
    EXPECT_NE(e.find("checksum"), std::string::npos) << e;
    flip_byte(model_file, 3);

    fs::resize_file(model_file, size - 10);
    e = error_of([&] { store.load(5, a.model, &a.opt); });
    EXPECT_NE(e.find("truncated"), std::string::npos) << e;

    fs::remove(model_file);
    e = error_of([&] { store.load(5, a.model, &a.opt); });
    EXPECT_NE(e.find("missing"), std::string::npos) << e;

    fs::remove(dir / "manifest.json");
    e = error_of([&] { store.load(5, a.model, &a.opt); });
    EXPECT_NE(e.find("incomplete"), std::string::npos) << e;
    EXPECT_TRUE(store.steps().empty());  // without a manifest it is not a checkpoint
}

TEST(Checkpoint, WrongShapesAreRefused) {
    Fixture a("shapes");
    const CheckpointStore store(a.root.string());
    store.save({1, 0, 0}, a.model, &a.opt, "");
    ModelArgs other = a.args;
    other.dim = 32;
    other.n_heads = 2;
    other.n_kv_heads = 2;
    Transformer m(other, 1, 4);
    auto opt = adamw_of(m);
    const std::string e = error_of([&] { store.load(1, m, opt.get()); });
    EXPECT_NE(e.find("shape"), std::string::npos) << e;
}

TEST(Checkpoint, LatestFallsBackPastACorruptOneAndPruneKeepsTheNewest) {
    Fixture a("fallback");
    const CheckpointStore store(a.root.string());
    store.save({1, 0, 1}, a.model, &a.opt, "");
    store.save({2, 0, 2}, a.model, &a.opt, "");
    const fs::path third = store.save({3, 0, 3}, a.model, &a.opt, "");
    fs::create_directories(a.root / "step-4.tmp");  // debris of an interrupted save
    EXPECT_EQ(store.steps(), (std::vector<int>{1, 2, 3}));
    flip_byte(third / "optimizer.safetensors", 100);
    std::vector<std::string> warnings;
    const auto st = store.load_latest(-1, a.model, &a.opt,
                                      [&](const std::string& w) { warnings.push_back(w); });
    ASSERT_TRUE(st.has_value());
    EXPECT_EQ(st->step, 2);
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_NE(warnings[0].find("step-3"), std::string::npos) << warnings[0];

    store.prune(2);
    EXPECT_EQ(store.steps(), (std::vector<int>{2, 3}));
    store.prune(0);  // keep all
    EXPECT_EQ(store.steps(), (std::vector<int>{2, 3}));
}

TEST(Checkpoint, ModelOnlyCheckpointLoadsWeightsButCannotResume) {
    Fixture a("model_only");
    const CheckpointStore store(a.root.string());
    const fs::path dir = store.save({9, 0, 0}, a.model, nullptr, "");
    EXPECT_FALSE(fs::exists(dir / "optimizer.safetensors"));
    const std::string e = error_of([&] { store.load(9, a.model, &a.opt); });
    EXPECT_NE(e.find("model only"), std::string::npos) << e;
    Fixture b("model_only_b");
    b.model.init_weights("agpt", 42);
    load_model_weights(dir.string(), b.model);
    EXPECT_EQ(b.model.params(), a.model.params());
}

}  // namespace
}  // namespace agpt
