#include "train/config.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <string>

#include <unistd.h>

#include "core/error.h"
#include "model/model_args.h"

namespace agpt {
namespace {

namespace fs = std::filesystem;

// Runs f and returns the Error's message; fails the test when nothing is thrown.
std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "expected an agpt::Error";
    return "";
}

testing::AssertionResult has(const std::string& msg, const std::string& part) {
    if (msg.find(part) != std::string::npos) return testing::AssertionSuccess();
    return testing::AssertionFailure() << "'" << part << "' not in: " << msg;
}

// Every key's value equal, doubles to the bit.
void expect_same(const JobConfig& a, const JobConfig& b) {
    JobConfig x = a, y = b;
    for (const ConfigKey& k : config_keys()) {
        std::visit(
            [&](auto* fx) {
                auto* fy = std::get<std::remove_pointer_t<decltype(fx)>*>(k.field(y));
                if constexpr (std::is_same_v<decltype(fx), double*>) {
                    EXPECT_EQ(std::memcmp(fx, fy, sizeof(double)), 0)
                        << k.name << ": " << *fx << " vs " << *fy;
                } else {
                    EXPECT_EQ(*fx, *fy) << k.name;
                }
            },
            k.field(x));
    }
    // The optimizer's keys as they take effect: given values, else the defaults.
    EXPECT_EQ(x.optimizer.name, y.optimizer.name);
    const OptimizerInfo& info = optimizer_info(x.optimizer.name);
    const Hyper hx("x", info.keys, x.optimizer.hyper), hy("y", info.keys, y.optimizer.hyper);
    for (const HyperKey& k : info.keys) EXPECT_EQ(hx.value(k.key), hy.value(k.key)) << k.key;
    const Hyper ax("x", routed_adamw_keys(), x.optimizer.adamw),
        ay("y", routed_adamw_keys(), y.optimizer.adamw);
    for (const HyperKey& k : routed_adamw_keys())
        EXPECT_EQ(ax.value(k.key), ay.value(k.key)) << k.key;
}

// An [optimizer] key's number.
double hyper(const JobConfig& c, const std::string& key) {
    return std::get<double>(c.optimizer.hyper.at(key));
}

class ConfigTest : public testing::Test {
  protected:
    void SetUp() override {
        const auto* info = testing::UnitTest::GetInstance()->current_test_info();
        dir_ = fs::temp_directory_path() / (std::string("agpt_config_") + info->test_suite_name() +
                                            "_" + info->name() + "_" + std::to_string(::getpid()));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }

    std::string write(const std::string& name, const std::string& text) const {
        const fs::path p = dir_ / name;
        std::ofstream(p, std::ios::binary) << text;
        return p.string();
    }

    // The error from loading a file with this text and no overrides.
    std::string file_error(const std::string& text) const {
        const std::string p = write("job.toml", text);
        return error_of([&] { load_job_config(p, {}); });
    }
    // Where file_error writes, known beforehand so that expectations can name it.
    std::string job_path() const { return (dir_ / "job.toml").string(); }

    fs::path dir_;
};

using ConfigLoad = ConfigTest;
using ConfigToml = ConfigTest;

// ---- priority ----

TEST_F(ConfigLoad, NoFileNoOverridesGivesDefaults) {
    expect_same(load_job_config("", {}), JobConfig{});
}

TEST_F(ConfigLoad, FileBeatsDefaultsAndOverridesBeatFile) {
    const std::string p = write("job.toml",
                                "[job]\nname = \"from_file\"\n"
                                "[optimizer]\nlr = 1e-3\n"
                                "[training]\nsteps = 10\nseq_len = 64\n");
    const JobConfig c = load_job_config(p, {{"training.steps", "20"}, {"--job.name", "cli"}});
    EXPECT_EQ(c.training.steps, 20);    // override over file
    EXPECT_EQ(c.job.name, "cli");       // override over file, "--" prefix tolerated
    EXPECT_EQ(c.training.seq_len, 64);  // file over default
    EXPECT_EQ(hyper(c, "lr"), 1e-3);
    EXPECT_EQ(c.training.local_batch_size, JobConfig{}.training.local_batch_size);  // default
    EXPECT_EQ(c.optimizer.hyper.count("beta2"), 0u);  // AdamW's own default applies
}

TEST_F(ConfigLoad, LaterOverrideWins) {
    const JobConfig c = load_job_config("", {{"training.steps", "5"}, {"training.steps", "7"}});
    EXPECT_EQ(c.training.steps, 7);
}

// ---- types ----

TEST_F(ConfigLoad, IntegerAcceptedForFloatKey) {
    const std::string p = write("job.toml", "[training]\nmax_norm = 2\n[optimizer]\nlr = 1\n");
    const JobConfig c = load_job_config(p, {{"sample.temperature", "1"}});
    EXPECT_EQ(c.training.max_norm, 2.0);
    EXPECT_EQ(hyper(c, "lr"), 1.0);
    EXPECT_EQ(c.sample.temperature, 1.0);
}

TEST_F(ConfigLoad, FloatRefusedForIntegerKey) {
    const std::string p = job_path();
    const std::string msg = file_error("[training]\nsteps = 1.5\n");
    EXPECT_EQ(msg, p + ": training.steps: expected an integer, got 1.5");
    EXPECT_TRUE(has(error_of([] {
                        load_job_config("", {{"training.steps", "1.5"}});
                    }),
                    "--training.steps: expected an integer, got '1.5'"));
}

TEST_F(ConfigLoad, WrongTypesInFileNameFileAndKey) {
    const std::string p = job_path();
    EXPECT_EQ(file_error("[job]\nname = 5\n"), p + ": job.name: expected a string, got 5");
    EXPECT_EQ(file_error("[validation]\nenable = \"yes\"\n"),
              p + ": validation.enable: expected true or false, got \"yes\"");
    EXPECT_EQ(file_error("[optimizer]\nlr = \"fast\"\n"),
              p + ": optimizer.lr: expected a number, got \"fast\"");
    EXPECT_EQ(file_error("[training]\nsteps = [1, 2]\n"),
              p + ": training.steps: expected an integer, got an array");
    EXPECT_EQ(file_error("[optimizer]\nlr = nan\n"),
              p + ": optimizer.lr: expected a finite number, got nan");
    EXPECT_EQ(file_error("[training]\nsteps = 10000000000\n"),
              p + ": training.steps: 10000000000 is out of range");
    EXPECT_EQ(file_error("training = 3\n"), p + ": 'training' must be a section [training], got 3");
}

TEST_F(ConfigLoad, OverrideTypes) {
    auto load = [](const std::string& key, const std::string& value) {
        return load_job_config("", {{key, value}});
    };
    EXPECT_EQ(error_of([&] { load("training.steps", "ten"); }),
              "--training.steps: expected an integer, got 'ten'");
    EXPECT_EQ(error_of([&] { load("training.steps", ""); }),
              "--training.steps: expected an integer, got ''");
    EXPECT_EQ(error_of([&] { load("training.steps", "99999999999999999999"); }),
              "--training.steps: 99999999999999999999 is out of range");
    EXPECT_EQ(error_of([&] { load("optimizer.lr", "1e-3x"); }),
              "--optimizer.lr: expected a number, got '1e-3x'");
    EXPECT_TRUE(has(error_of([&] { load("optimizer.lr", "inf"); }), "--optimizer.lr: "));
    EXPECT_EQ(error_of([&] { load("validation.enable", "yes"); }),
              "--validation.enable: expected true, false, 1 or 0, got 'yes'");
    EXPECT_EQ(error_of([&] { load("job.description", std::string("\xff\xfe")); }),
              "--job.description: expected UTF-8 text");

    EXPECT_EQ(hyper(load("optimizer.lr", "8e-4"), "lr"), 8e-4);
    EXPECT_EQ(hyper(load("optimizer.lr", "+2"), "lr"), 2.0);
    EXPECT_EQ(load("training.seed", "-12345678901").training.seed, -12345678901L);
    EXPECT_EQ(load("training.global_batch_size", "-1").training.global_batch_size, -1);
    for (const auto& [text, value] :
         {std::pair{"true", true}, {"1", true}, {"false", false}, {"0", false}}) {
        EXPECT_EQ(load("validation.enable", text).validation.enable, value) << text;
    }
    EXPECT_EQ(load("sample.prompt", "").sample.prompt, "");
}

// ---- unknown keys and sections ----

TEST_F(ConfigLoad, UnknownKeySuggestsClosest) {
    const std::string p = job_path();
    EXPECT_EQ(file_error("[training]\nstpes = 10\n"),
              p + ": unknown key 'training.stpes' (did you mean 'training.steps'?)");
    EXPECT_EQ(file_error("[optimizer]\nweight_decy = 0.1\n"),
              p + ": unknown key 'optimizer.weight_decy' (did you mean 'optimizer.weight_decay'?)");
    EXPECT_EQ(error_of([] {
                  load_job_config("", {{"training.stpes", "10"}});
              }),
              "--training.stpes: unknown key 'training.stpes' (did you mean 'training.steps'?)");
}

TEST_F(ConfigLoad, UnknownSectionSuggestsClosest) {
    const std::string p = job_path();
    EXPECT_EQ(file_error("[trainig]\nsteps = 10\n"),
              p + ": unknown section 'trainig' (did you mean 'training'?)");
    EXPECT_EQ(file_error("[float8]\nenable_fsdp_float8_all_gather = true\n"),
              p + ": unknown section 'float8'");
    // torchtitan's FSDP key is not ours: [parallelism] has data_parallel_degree.
    EXPECT_EQ(file_error("[parallelism]\ndata_parallel_shard_degree = 1\n"),
              p + ": unknown key 'parallelism.data_parallel_shard_degree' (did you mean "
                  "'parallelism.data_parallel_degree'?)");
}

TEST_F(ConfigLoad, KeyUnderWrongSectionSuggestsItsSection) {
    const std::string p = job_path();
    EXPECT_EQ(
        file_error("[training]\nwarmup_steps = 10\n"),
        p + ": unknown key 'training.warmup_steps' (did you mean 'lr_scheduler.warmup_steps'?)");
    EXPECT_EQ(file_error("steps = 10\n"),
              p + ": unknown key 'steps' (did you mean 'training.steps' or 'validation.steps'?)");
}

TEST_F(ConfigLoad, FarOffKeyGetsNoSuggestion) {
    const std::string p = job_path();
    EXPECT_EQ(file_error("[training]\nfloat8_recipe = \"rowwise\"\n"),
              p + ": unknown key 'training.float8_recipe'");
}

// ---- file problems ----

TEST_F(ConfigLoad, SyntaxErrorGivesFileLineAndColumn) {
    const std::string p = job_path();
    const std::string msg = file_error("[training]\nsteps = 10\nseq_len = = 3\n");
    EXPECT_TRUE(has(msg, p + ":3:")) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST_F(ConfigLoad, DuplicateKeyIsASyntaxError) {
    const std::string p = job_path();
    EXPECT_TRUE(has(file_error("[training]\nsteps = 1\nsteps = 2\n"), p + ":3:"));
}

TEST_F(ConfigLoad, MissingFile) {
    const std::string p = (dir_ / "nope.toml").string();
    EXPECT_EQ(error_of([&] { load_job_config(p, {}); }), p + ": cannot open file");
    EXPECT_TRUE(has(error_of([&] { load_job_config(dir_.string(), {}); }),
                    dir_.string() + ": cannot open file"));
}

TEST_F(ConfigLoad, ImpossibleValueNamesFileOnlyWhenFileSetIt) {
    const std::string p = job_path();
    EXPECT_EQ(file_error("[training]\nsteps = 0\n"), p + ": training.steps = 0 must be positive");
    // The override replaced the file's value, so the file is not to blame.
    const std::string p2 = write("ok.toml", "[training]\nsteps = 10\n");
    EXPECT_EQ(error_of([&] {
                  load_job_config(p2, {{"training.steps", "-3"}});
              }),
              "training.steps = -3 must be positive");
}

// ---- override arguments ----

TEST(ConfigOverrides, BothFormsParse) {
    const ConfigOverrides o =
        parse_override_args({"--training.steps", "10", "--job.name=run1", "--sample.prompt=a=b",
                             "--job.description=", "--training.global_batch_size", "-1"});
    const ConfigOverrides want = {{"training.steps", "10"},
                                  {"job.name", "run1"},
                                  {"sample.prompt", "a=b"},
                                  {"job.description", ""},
                                  {"training.global_batch_size", "-1"}};
    EXPECT_EQ(o, want);
    EXPECT_TRUE(parse_override_args({}).empty());
}

TEST(ConfigOverrides, MalformedArgumentsNameTheArgument) {
    EXPECT_TRUE(has(error_of([] {
                        parse_override_args({"training.steps", "10"});
                    }),
                    "'training.steps'"));
    EXPECT_TRUE(has(error_of([] { parse_override_args({"--training.steps"}); }),
                    "'--training.steps': missing value"));
    EXPECT_TRUE(has(error_of([] {
                        parse_override_args({"--training.steps", "--job.name=x"});
                    }),
                    "'--training.steps': missing value"));
    EXPECT_TRUE(has(error_of([] { parse_override_args({"--steps=10"}); }), "'--steps=10'"));
    EXPECT_TRUE(has(error_of([] { parse_override_args({"--training.=3"}); }), "'--training.=3'"));
    EXPECT_TRUE(has(error_of([] { parse_override_args({"-x"}); }), "'-x'"));
}

// ---- validation ----

TEST(ConfigValidate, DefaultsAreValid) {
    validate_job_config(JobConfig{});
}

TEST(ConfigValidate, GlobalBatchMustBeAMultipleOfLocal) {
    EXPECT_EQ(error_of([] {
                  load_job_config("", {{"training.global_batch_size", "12"},
                                       {"training.local_batch_size", "8"}});
              }),
              "training.global_batch_size = 12 is not a multiple of training.local_batch_size = 8");
}

TEST(ConfigValidate, GradAccumSteps) {
    JobConfig c;
    EXPECT_EQ(c.grad_accum_steps(), 1);
    c.training.local_batch_size = 8;
    c.training.global_batch_size = 32;
    EXPECT_EQ(c.grad_accum_steps(), 4);
    c.training.global_batch_size = 8;
    EXPECT_EQ(c.grad_accum_steps(), 1);
}

TEST(ConfigValidate, ImpossibleValuesAreRefused) {
    struct Case {
        const char* key;
        const char* value;
        const char* message;  // must appear in the error
    };
    const Case cases[] = {
        {"training.local_batch_size", "0", "training.local_batch_size = 0 must be positive"},
        {"training.global_batch_size", "0", "training.global_batch_size = 0 must be positive"},
        {"training.global_batch_size", "-8", "training.global_batch_size = -8"},
        {"training.seq_len", "0", "training.seq_len = 0 must be positive"},
        {"training.steps", "0", "training.steps = 0 must be positive"},
        {"training.threads", "-1", "training.threads = -1 must be >= 0"},
        {"training.device", "gpu", "training.device = 'gpu' must be one of: cpu, cuda"},
        {"training.mixed_precision_param", "fp16",
         "training.mixed_precision_param = 'fp16' must be one of: bfloat16, float32"},
        {"checkpoint.interval", "0", "checkpoint.interval = 0 must be positive"},
        {"checkpoint.keep_latest_k", "-1", "checkpoint.keep_latest_k = -1 must be >= 0"},
        {"checkpoint.folder", "a/b", "checkpoint.folder"},
        {"checkpoint.export_dtype", "int8", "checkpoint.export_dtype"},
        {"job.walltime_deadline", "-5", "job.walltime_deadline"},
        {"training.dataset", "", "training.dataset = '' must not be empty"},
        {"optimizer.lr", "0", "optimizer.lr = 0.0 must be positive"},
        {"optimizer.beta1", "1", "optimizer.beta1 = 1.0 must be in [0, 1)"},
        {"optimizer.beta2", "-0.1", "optimizer.beta2 = -0.1 must be in [0, 1)"},
        {"optimizer.eps", "0", "optimizer.eps = 0.0 must be positive"},
        {"optimizer.weight_decay", "-1e-3", "optimizer.weight_decay = -0.001 must be >= 0"},
        {"optimizer.name", "Adam",
         "optimizer.name = 'Adam' is not a known optimizer (did you mean 'AdamW'?); known: AdamW, "
         "Muon, Mano, SophiaG, SPAM, Lion, ScheduleFreeAdamW, AdEMAMix"},
        {"lr_scheduler.warmup_steps", "-1", "lr_scheduler.warmup_steps = -1 must be >= 0"},
        {"lr_scheduler.decay_ratio", "1.5", "lr_scheduler.decay_ratio = 1.5 must be -1"},
        {"lr_scheduler.decay_ratio", "-0.5", "lr_scheduler.decay_ratio = -0.5 must be -1"},
        {"lr_scheduler.decay_type", "cosin",
         "lr_scheduler.decay_type = 'cosin' must be one of: linear, sqrt, cosine (did you mean "
         "'cosine'?)"},
        {"lr_scheduler.min_lr_factor", "1.5", "lr_scheduler.min_lr_factor = 1.5 must be in [0, 1]"},
        {"model.name", "llama3", "model.name = 'llama3' must be one of: agpt"},
        {"model.flavor", "debugmdel", "(did you mean 'debugmodel'?); known: "},
        {"model.init", "titan", "model.init = 'titan' must be one of: agpt, torchtitan"},
        {"model.tokenizer", "tiktoken", "model.tokenizer = 'tiktoken' must be 'byte' or the path"},
        {"validation.split", "0", "validation.split = 0.0 must be in (0, 1)"},
        {"validation.split", "1", "validation.split = 1.0 must be in (0, 1)"},
        {"validation.freq", "0", "validation.freq = 0 must be positive"},
        {"parallelism.zero", "2", "parallelism.zero = 2 must be 0 or 1"},
        {"parallelism.data_parallel_degree", "0",
         "parallelism.data_parallel_degree = 0 must be positive or -1"},
        {"parallelism.tensor_parallel_degree", "0",
         "parallelism.tensor_parallel_degree = 0 must be positive"},
        {"parallelism.bucket_mb", "0", "parallelism.bucket_mb = 0.0 must be positive"},
        {"validation.steps", "0", "validation.steps = 0 must be positive or -1"},
        {"validation.steps", "-2", "validation.steps = -2 must be positive or -1"},
        {"metrics.log_freq", "0", "metrics.log_freq = 0 must be positive"},
        {"sample.max_new_tokens", "-1", "sample.max_new_tokens = -1 must be >= 0"},
        {"sample.temperature", "-0.5", "sample.temperature = -0.5 must be >= 0"},
        {"sample.top_k", "-1", "sample.top_k = -1 must be >= 0"},
        {"job.name", "", "job.name = '' must not be empty"},
        {"job.name", ".", "job.name = '.' is not a usable folder name"},
        {"job.name", "..", "job.name = '..' is not a usable folder name"},
        {"job.name", "a/b", "job.name = 'a/b' must not contain '/'"},
    };
    for (const Case& c : cases) {
        const std::string msg = error_of([&] { load_job_config("", {{c.key, c.value}}); });
        EXPECT_TRUE(has(msg, c.message)) << c.key << " = " << c.value;
    }
}

TEST(ConfigValidate, UnknownFlavorListsKnownOnes) {
    const std::string msg = error_of([] { load_job_config("", {{"model.flavor", "huge"}}); });
    EXPECT_TRUE(has(msg, "model.flavor = 'huge' is not a known flavor; known: "));
    for (const Flavor& f : agpt_flavors()) EXPECT_TRUE(has(msg, f.name));
}

TEST(ConfigValidate, BoundaryValuesAreAccepted) {
    const JobConfig c = load_job_config("", {{"lr_scheduler.decay_ratio", "-1"},
                                             {"lr_scheduler.min_lr_factor", "1"},
                                             {"optimizer.beta1", "0"},
                                             {"optimizer.weight_decay", "0"},
                                             {"training.max_norm", "-1"},
                                             {"lr_scheduler.warmup_steps", "0"},
                                             {"validation.steps", "-1"},
                                             {"sample.temperature", "0"},
                                             {"sample.max_new_tokens", "0"},
                                             {"model.init", "torchtitan"},
                                             {"lr_scheduler.decay_type", "sqrt"}});
    EXPECT_EQ(c.validation.steps, -1);
    for (const char* r : {"0", "1", "0.8"}) load_job_config("", {{"lr_scheduler.decay_ratio", r}});
}

TEST(ConfigValidate, EveryRegisteredFlavorPasses) {
    // Including the grouped-query ones, whose n_heads must divide by n_kv_heads.
    for (const Flavor& f : agpt_flavors()) load_job_config("", {{"model.flavor", f.name}});
}

TEST(ConfigValidate, NonFiniteNumbersSetInCodeAreRefused) {
    JobConfig c;
    c.training.max_norm = std::numeric_limits<double>::quiet_NaN();
    EXPECT_TRUE(has(error_of([&] { validate_job_config(c); }),
                    "training.max_norm = nan must be a finite number"));
}

// ---- writing ----

TEST_F(ConfigToml, EveryKeyWrittenUnderItsSection) {
    const std::string text = job_config_to_toml(JobConfig{});
    for (const ConfigKey& k : config_keys()) {
        const std::string header = fmt::format("[{}]\n", k.section());
        const auto at_header = text.find(header);
        ASSERT_NE(at_header, std::string::npos) << header;
        const auto at_key = text.find(fmt::format("\n{} = ", k.leaf()), at_header);
        ASSERT_NE(at_key, std::string::npos) << k.name;
        const auto next_header = text.find("\n[", at_header + 1);
        EXPECT_LT(at_key, next_header) << k.name;
    }
    EXPECT_TRUE(has(text, "max_norm = 1.0\n"));  // a whole number stays a float
}

TEST_F(ConfigToml, RoundTripDefaults) {
    const JobConfig a;
    const JobConfig b = load_job_config(write("a.toml", job_config_to_toml(a)), {});
    expect_same(a, b);
    EXPECT_EQ(job_config_to_toml(b), job_config_to_toml(a));
}

TEST_F(ConfigToml, RoundTripTrickyValues) {
    JobConfig a;
    a.job.name = "run \"quoted\" 'single' ünïcödé ✓ 😀";
    a.job.description = "line1\nline2\r\n\ttab \\ backslash \\n literal \b\f \x01 \x1f \x7f end";
    a.job.dump_folder = "C:\\out\\ \"dir\"";
    a.sample.prompt = "\"\"\" triple ''' quotes\n";
    a.model.init = "torchtitan";
    a.optimizer.hyper["lr"] = 0.1 + 0.2;
    a.optimizer.hyper["eps"] = 1e-300;
    a.optimizer.hyper["beta1"] = 1.0 / 3.0;
    a.optimizer.hyper["weight_decay"] = 1e300;
    a.training.max_norm = -0.0;
    a.sample.temperature = 123456789.125;
    a.lr_scheduler.min_lr_factor = 5e-324;  // the smallest denormal
    a.training.seed = std::numeric_limits<long>::min();
    a.training.threads = std::numeric_limits<int>::max();
    a.training.device = "cuda";
    a.training.mixed_precision_param = "float32";
    a.validation.enable = false;
    a.activation_checkpoint.mode = "full";
    validate_job_config(a);

    const JobConfig b = load_job_config(write("a.toml", job_config_to_toml(a)), {});
    expect_same(a, b);
    EXPECT_EQ(job_config_to_toml(b), job_config_to_toml(a));

    a.sample.prompt = "";
    a.job.description = "";
    expect_same(a, load_job_config(write("b.toml", job_config_to_toml(a)), {}));
}

TEST(ConfigKeys, TableMatchesTheStruct) {
    std::set<std::string> names;
    for (const ConfigKey& k : config_keys()) {
        EXPECT_TRUE(names.insert(k.name).second) << "duplicate " << k.name;
        EXPECT_FALSE(k.help.empty()) << k.name;
        EXPECT_EQ(find_config_key(k.name), &k);
    }
    // 45 + [task] 2 + [rl] 9 + model.aux_loss_alpha + [activation_checkpoint] 1 + [parallelism] 6
    // + training.device, training.mixed_precision_param
    EXPECT_EQ(names.size(), 66u);
    EXPECT_EQ(find_config_key("training.nope"), nullptr);
    EXPECT_EQ(find_config_key("training.max_norm")->type, ConfigType::Double);
    // The optimizer's own keys depend on optimizer.name: they are not in the fixed table.
    EXPECT_EQ(find_config_key("optimizer.lr"), nullptr);
    EXPECT_STREQ(config_type_name(find_config_key("training.seed")->type), "integer");
    EXPECT_STREQ(config_type_name(find_config_key("validation.enable")->type), "boolean");
    // Distinct keys reach distinct fields.
    JobConfig c;
    std::set<const void*> fields;
    for (const ConfigKey& k : config_keys()) {
        fields.insert(std::visit([](auto* p) -> const void* { return p; }, k.field(c)));
    }
    EXPECT_EQ(fields.size(), names.size());
}

// ---- the optimizer's own keys ----

TEST_F(ConfigLoad, EachOptimizerTakesItsOwnKeys) {
    const std::string p = write("muon.toml",
                                "[optimizer]\nname = \"Muon\"\nlr = 0.02\nns_steps = 6\n"
                                "adjust_lr_fn = \"match_rms_adamw\"\nnesterov = false\n"
                                "[optimizer.adamw]\nlr = 3e-4\nbeta2 = 0.99\n");
    const JobConfig c = load_job_config(p, {{"optimizer.momentum", "0.9"}});
    EXPECT_EQ(c.optimizer.name, "Muon");
    EXPECT_EQ(hyper(c, "lr"), 0.02);
    EXPECT_EQ(hyper(c, "ns_steps"), 6.0);
    EXPECT_EQ(hyper(c, "nesterov"), 0.0);
    EXPECT_EQ(hyper(c, "momentum"), 0.9);
    EXPECT_EQ(std::get<std::string>(c.optimizer.hyper.at("adjust_lr_fn")), "match_rms_adamw");
    EXPECT_EQ(std::get<double>(c.optimizer.adamw.at("lr")), 3e-4);
    EXPECT_EQ(std::get<double>(c.optimizer.adamw.at("beta2")), 0.99);
    // The written config states every key, defaults included, and reads back the same.
    const std::string text = job_config_to_toml(c);
    EXPECT_TRUE(has(text, "[optimizer]\nname = \"Muon\"\nlr = 0.02\n"));
    EXPECT_TRUE(has(text, "ns_a = 3.4445\n"));
    EXPECT_TRUE(has(text, "nesterov = false\n"));
    EXPECT_TRUE(has(text, "ns_steps = 6\n"));
    EXPECT_TRUE(has(text, "[optimizer.adamw]\nlr = 0.0003\n"));
    const JobConfig back = load_job_config(write("back.toml", text), {});
    EXPECT_EQ(job_config_to_toml(back), text);
    EXPECT_EQ(hyper(back, "ns_a"), 3.4445);
}

TEST_F(ConfigLoad, OptimizerNameIsCaseInsensitiveAndCanonical) {
    EXPECT_EQ(load_job_config("", {{"optimizer.name", "schedulefreeadamw"}}).optimizer.name,
              "ScheduleFreeAdamW");
}

TEST_F(ConfigLoad, BuiltInLrIsAdamWsOnly) {
    // The built-in job's 2e-3 belongs to AdamW; Lion picked without an lr gets Lion's default.
    EXPECT_EQ(hyper(load_job_config("", {}), "lr"), 2e-3);
    EXPECT_EQ(load_job_config("", {{"optimizer.name", "Lion"}}).optimizer.hyper.count("lr"), 0u);
    EXPECT_EQ(
        hyper(load_job_config("", {{"optimizer.name", "Lion"}, {"optimizer.lr", "1e-4"}}), "lr"),
        1e-4);
    // The override of the name may come after the keys: they are checked against the final name.
    EXPECT_EQ(hyper(load_job_config("", {{"optimizer.ns_steps", "3"}, {"optimizer.name", "Muon"}}),
                    "ns_steps"),
              3.0);
}

TEST_F(ConfigLoad, OptimizerKeyErrorsNameTheKeyAndTheOptimizer) {
    const std::string p = job_path();
    EXPECT_EQ(file_error("[optimizer]\nname = \"Lion\"\nbeta3 = 0.9\n"),
              p + ": unknown key 'optimizer.beta3' (did you mean 'optimizer.beta1'?)");
    EXPECT_EQ(file_error("[optimizer]\nname = \"Lion\"\nzzz = 1\n"),
              p + ": unknown key 'optimizer.zzz' (Lion takes: optimizer.lr, optimizer.beta1, "
                  "optimizer.beta2, optimizer.weight_decay)");
    EXPECT_EQ(file_error("[optimizer]\nname = \"Muon\"\nns_steps = 2.5\n"),
              p + ": optimizer.ns_steps: expected an integer, got 2.5");
    EXPECT_EQ(file_error("[optimizer]\nname = \"Muon\"\nadjust_lr_fn = \"fast\"\n"),
              p + ": optimizer.adjust_lr_fn: expected one of original, match_rms_adamw, got "
                  "\"fast\"");
    EXPECT_EQ(file_error("[optimizer.adamw]\nlr = 1e-3\n"),
              p + ": optimizer.adamw.lr: AdamW routes no parameter to AdamW, so "
                  "[optimizer.adamw] has no effect; remove it");
    EXPECT_TRUE(
        has(error_of([] {
                load_job_config("", {{"optimizer.name", "Muon"}, {"optimizer.ns_steps", "200"}});
            }),
            "ns_steps must be in [0, 100), got 200"));
    EXPECT_EQ(error_of([] {
                  load_job_config("", {{"optimizer.name", "Muon"}, {"optimizer.nesterov", "yes"}});
              }),
              "--optimizer.nesterov: expected true, false, 1 or 0, got 'yes'");
    EXPECT_TRUE(
        has(error_of([] {
                load_job_config("", {{"optimizer.name", "Muon"}, {"optimizer.adamw.lr", "0"}});
            }),
            "optimizer.adamw.lr = 0.0 must be positive"));
}

// ---- bundled configs ----

TEST(ConfigFiles, BundledConfigsLoadAndValidate) {
    const fs::path dir = fs::path(AGPT_SOURCE_DIR) / "configs";
    int n = 0;
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.path().extension() != ".toml") continue;
        ++n;
        SCOPED_TRACE(entry.path().string());
        const JobConfig c = load_job_config(entry.path().string(), {});
        validate_job_config(c);
    }
    EXPECT_GE(n, 1);
}

TEST(ConfigFiles, DebugModel) {
    const JobConfig c =
        load_job_config((fs::path(AGPT_SOURCE_DIR) / "configs" / "debugmodel.toml").string(), {});
    EXPECT_EQ(c.model.flavor, "debugmodel");
    EXPECT_EQ(c.training.dataset, "tinyshakespeare");
    EXPECT_EQ(c.training.local_batch_size, 8);
    EXPECT_EQ(c.training.seq_len, 256);
    EXPECT_EQ(c.training.steps, 200);
    EXPECT_EQ(hyper(c, "lr"), 8e-4);
    EXPECT_EQ(c.lr_scheduler.warmup_steps, 20);
    EXPECT_EQ(c.lr_scheduler.decay_ratio, 0.8);
    EXPECT_EQ(c.metrics.log_freq, 10);
    EXPECT_EQ(c.validation.freq, 50);
}

}  // namespace
}  // namespace agpt
