#pragma once
// Job configuration: torchtitan's TOML sections and key names. Values come from, in rising
// priority: built-in defaults, the TOML file, command-line overrides (--section.key value).
// Everything is validated before any work starts; errors name the file/key and the problem.
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "model/model_args.h"
#include "optim/lr_schedule.h"
#include "optim/optimizer.h"

namespace agpt {

// The defaults are the built-in job `make run` trains: the `small` flavor on the bundled corpus,
// ~3 minutes on two cores to a validation loss near 1.6 nats per byte (docs/benchmarks.md).
// Optimizer and schedule keys not set here keep torchtitan's defaults.
struct JobConfig {
    struct Job {
        std::string name = "default";
        std::string dump_folder = "outputs";
        std::string description = "";
        // Unix time (seconds) by which the job must have saved and exited; 0: none.
        double walltime_deadline = 0.0;
    } job;
    struct Model {
        std::string name = "agpt";
        std::string flavor = "small";
        std::string init = "agpt";       // agpt | torchtitan
        std::string tokenizer = "byte";  // byte: 256 byte ids + <|bos|> + <|eos|>
        // Architecture switches on top of the flavor's (model_args.h: ModelSwitches).
        bool qk_norm = false;
        double attn_softcap = 0.0;    // 0: the flavor's (off unless a _softcap flavor)
        double final_softcap = 0.0;   // 0: off
        std::string ffn = "swiglu";   // swiglu | relu2
        double aux_loss_alpha = 0.0;  // MoE sequence-level balance loss weight; 0: off
        ModelSwitches switches() const {
            return {qk_norm, attn_softcap, final_softcap, ffn, aux_loss_alpha};
        }
    } model;
    // [optimizer]: `name` plus that optimizer's own keys (docs/optimizers.md, `agpt optimizers`);
    // [optimizer.adamw]: the AdamW that takes what a matrix optimizer does not. Keys not given
    // take the optimizer's reference defaults. The built-in job's lr (2e-3) is AdamW's: a file
    // or override that picks another optimizer without giving lr gets that optimizer's default.
    struct Optimizer {
        std::string name = "AdamW";
        std::map<std::string, HyperValue> hyper{{"lr", 2e-3}};
        std::map<std::string, HyperValue> adamw;
        OptimizerSpec spec() const { return {name, hyper, adamw}; }
    } optimizer;
    LrScheduleConfig lr_scheduler{
        .warmup_steps = 50};  // keys warmup_steps, decay_ratio, decay_type, min_lr_factor
    struct Training {
        std::string dataset = "tinyshakespeare";  // a registered name or a path (docs/data.md)
        // The dataset registry file; "": $AGPT_DATASETS, else ./datasets.toml if present.
        std::string dataset_registry = "";
        int local_batch_size = 16;
        int global_batch_size = -1;  // -1: local_batch_size (one rank, no accumulation)
        int seq_len = 128;
        double max_norm = 1.0;  // <= 0 disables clipping
        int steps = 800;
        long seed = 42;
        int threads = 0;             // 0: all cores
        std::string device = "cpu";  // cpu | cuda (one GPU: train/cuda_training.h)
        // cuda only: the compute dtype of the GPU model (fp32 master weights either way).
        std::string mixed_precision_param = "bfloat16";  // bfloat16 | float32
    } training;
    struct Validation {
        bool enable = true;
        double split = 0.1;  // last fraction of the corpus held out
        int freq = 200;
        int steps = -1;  // batches per evaluation; -1: the whole split
    } validation;
    struct Metrics {
        int log_freq = 25;
        bool enable_tensorboard = false;
        std::string save_tb_folder = "tb";  // inside the run folder
    } metrics;
    struct Checkpoint {
        bool enable = false;
        std::string folder = "checkpoints";  // inside the run folder
        int interval = 500;                  // steps between saves
        int keep_latest_k = 0;               // 0: keep all
        int load_step = -1;                  // -1: the latest complete checkpoint
        std::string initial_load_path = "";  // a checkpoint step folder to start from
        bool last_save_model_only = false;   // the final save holds the model only
        std::string export_dtype = "float32";
    } checkpoint;
    struct Sample {
        int max_new_tokens = 300;
        double temperature = 0.8;
        int top_k = 0;  // 0: no top-k filtering
        std::string prompt = "\n";
    } sample;
    // [task], [rl]: supervised warm-up (`agpt sft`) and GRPO fine-tuning (`agpt rl`) on a
    // registered task (docs/rl.md). Both also use [training] (steps, local_batch_size as the
    // micro-batch, seed), [optimizer], [lr_scheduler], [checkpoint] and [metrics].
    struct Task {
        std::string name = "";  // a registered task (agpt rl tasks)
        int difficulty = 0;     // 0: the task's default
    } task;
    struct Rl {
        std::string init = "";  // the run folder whose newest checkpoint starts the policy
        int group_size = 8;     // completions sampled per prompt
        int prompts_per_step = 16;
        double temperature = 1.0;  // sampling temperature
        double clip_eps = 0.2;     // PPO ratio clip
        double kl_coef = 0.04;     // weight of the k3 KL penalty to the initial model
        int epochs_per_batch = 1;  // optimizer steps on each sampled batch
        int max_new_tokens = 32;
        int eval_n = 200;  // held-out prompts scored at the start and end (0: none)
    } rl;
    // [activation_checkpoint] (torchtitan's section): none keeps every layer's activations for
    // backward; full keeps each layer's input and recomputes the layer's forward right before
    // its backward (agpt family; docs/architecture.md).
    struct ActivationCheckpointing {
        std::string mode = "none";  // none | full
    } activation_checkpoint;
    // The rank mesh DP × TP × EP (docs/distributed.md); checked against the world size when the
    // job starts (dist/parallel_mesh.h).
    struct Parallelism {
        int data_parallel_degree = -1;  // -1: world size / (tensor × expert degrees)
        int zero = 0;                   // 0 | 1
        int tensor_parallel_degree = 1;
        int expert_parallel_degree = 1;
        double bucket_mb = 25.0;
        bool overlap_grad_reduce = true;  // ZeRO-0: each bucket's all-reduce starts in backward
    } parallelism;

    // Micro-batches per optimizer step on each rank (global / (local × data-parallel ranks)).
    int grad_accum_steps(int data_parallel_degree = 1) const;
};

using ConfigOverrides =
    std::vector<std::pair<std::string, std::string>>;  // ("training.steps", "10")

// Parses "--section.key value" / "--section.key=value" arguments into overrides; throws Error on
// anything else.
ConfigOverrides parse_override_args(const std::vector<std::string>& args);

// Defaults, then the TOML file (skipped when path is empty), then overrides; validated.
// Throws Error naming the file or key, with a did-you-mean for unknown keys where one fits.
JobConfig load_job_config(const std::string& toml_path, const ConfigOverrides& overrides);

// Cross-key checks (batch divisibility, flavor exists, heads divisible by kv heads, ...).
void validate_job_config(const JobConfig& cfg);

// The resolved configuration as TOML that load_job_config reads back to an equal JobConfig.
std::string job_config_to_toml(const JobConfig& cfg);

// The table of every key, in the order job_config_to_toml writes them. It alone drives file and
// override parsing, type checks, writing and did-you-mean, so a new key is one new row.
enum class ConfigType { Int, Long, Double, Bool, String };
using ConfigField = std::variant<int*, long*, double*, bool*, std::string*>;

struct ConfigKey {
    std::string name;  // "section.key"
    ConfigType type;
    std::string help;
    ConfigField (*field)(JobConfig&);

    std::string_view section() const { return std::string_view(name).substr(0, name.find('.')); }
    std::string_view leaf() const { return std::string_view(name).substr(name.find('.') + 1); }
};

const std::vector<ConfigKey>& config_keys();
// nullptr when unknown.
const ConfigKey* find_config_key(std::string_view name);
// "integer", "float", "boolean" or "string".
const char* config_type_name(ConfigType type);
// The key's value in cfg, written as a TOML value (strings quoted and escaped).
std::string config_value_to_toml(const JobConfig& cfg, const ConfigKey& key);

}  // namespace agpt
