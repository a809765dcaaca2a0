#include "train/trainer.h"

#include <fcntl.h>
#include <omp.h>
#include <sys/file.h>
#include <unistd.h>

#include <cblas.h>
#include <fmt/ranges.h>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "core/memory.h"
#include "core/rng.h"
#include "core/text_file.h"
#include "core/timer.h"
#include "data/dataset.h"
#include "data/tokenizer.h"
#include "dist/communicator.h"
#include "dist/data_parallel.h"
#include "dist/expert_parallel.h"
#include "dist/parallel_mesh.h"
#include "dist/zero.h"
#include "kernels/cuda/switches.h"
#include "model/gpt2.h"
#include "model/model_zoo.h"
#include "model/transformer.h"
#include "optim/grad_clip.h"
#include "optim/lr_schedule.h"
#include "optim/optimizer.h"
#include "train/checkpoint.h"
#include "train/cuda_training.h"
#include "train/expert_checkpoint.h"
#include "train/generate.h"
#include "train/metrics.h"
#include "train/tensorboard.h"

namespace agpt {

namespace fs = std::filesystem;

int set_thread_count(int threads) {
    const int n = threads > 0 ? threads : omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return n;
}

std::string create_run_dir(const JobConfig& cfg) {
    const fs::path dir = fs::path(cfg.job.dump_folder) / cfg.job.name;
    if (fs::exists(dir))
        fail("{}: run folder already exists; choose another --job.name or move it away",
             dir.string());
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) fail("{}: cannot create run folder: {}", dir.string(), ec.message());
    return dir.string();
}

namespace {

// Set by SIGTERM / SIGUSR1 (what PBS and Slurm send before the walltime ends).
volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void on_stop_signal(int sig) {
    g_stop_signal = sig;
}

class StopSignals {
  public:
    StopSignals() {
        g_stop_signal = 0;
        old_term_ = std::signal(SIGTERM, on_stop_signal);
        old_usr1_ = std::signal(SIGUSR1, on_stop_signal);
    }
    ~StopSignals() {
        std::signal(SIGTERM, old_term_);
        std::signal(SIGUSR1, old_usr1_);
    }
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;

  private:
    void (*old_term_)(int);
    void (*old_usr1_)(int);
};

double unix_now() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// An exclusive lock on the run folder for the life of the run: two processes appending to the
// same metrics and checkpoints would corrupt both.
class RunLock {
  public:
    explicit RunLock(const fs::path& run) {
        const fs::path p = run / ".lock";
        fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd_ < 0) fail("{}: cannot open lock file", p.string());
        if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
            ::close(fd_);
            fail("{}: run folder is in use by another agpt process", run.string());
        }
    }
    ~RunLock() { ::close(fd_); }
    RunLock(const RunLock&) = delete;
    RunLock& operator=(const RunLock&) = delete;

  private:
    int fd_ = -1;
};

class Log {
  public:
    // path "": console only (the ranks other than 0, which write no run files).
    Log(std::FILE* console, const std::string& path) : console_(console) {
        if (path.empty()) return;
        file_ = std::fopen(path.c_str(), "a");
        if (!file_) fail("{}: cannot open for writing", path);
    }
    ~Log() {
        if (file_) std::fclose(file_);
    }
    Log(const Log&) = delete;
    Log& operator=(const Log&) = delete;
    template <typename... Args>
    void line(fmt::format_string<Args...> f, Args&&... args) {
        const std::string s = fmt::format(f, std::forward<Args>(args)...) + "\n";
        if (console_) {
            std::fputs(s.c_str(), console_);
            std::fflush(console_);
        }
        if (file_) {
            std::fputs(s.c_str(), file_);
            std::fflush(file_);
        }
    }

  private:
    std::FILE* console_;
    std::FILE* file_ = nullptr;
};

double evaluate(LanguageModel& model, const TokenSpans& val, int B, int T, int max_batches) {
    const auto windows = sequential_windows(val, T);
    const long n_windows = static_cast<long>(windows.size());
    const long n_batches = max_batches < 0 ? (n_windows + B - 1) / B
                                           : std::min<long>(max_batches, (n_windows + B - 1) / B);
    std::vector<int32_t> inputs(static_cast<std::size_t>(B) * T), targets(inputs.size()),
        window(static_cast<std::size_t>(T) + 1);
    double loss_sum = 0.0;
    long counted = 0;
    for (long batch = 0; batch < n_batches; batch++) {
        const int rows = static_cast<int>(std::min<long>(B, n_windows - batch * B));
        for (int b = 0; b < rows; b++) {
            const auto [span, start] = windows[batch * B + b];
            val.read(span, start, window.size(), window.data());
            std::copy_n(window.data(), T, inputs.data() + static_cast<long>(b) * T);
            std::copy_n(window.data() + 1, T, targets.data() + static_cast<long>(b) * T);
        }
        loss_sum += model.forward_loss(inputs.data(), targets.data(), rows, T);
        counted += static_cast<long>(rows) * T;
    }
    return loss_sum / static_cast<double>(counted);
}

}  // namespace

void gauss_newton_bartlett(LanguageModel& model, const int32_t* step_inputs, int B, int T,
                           int accum, double max_norm, uint64_t seed, int step,
                           Communicator* data_ranks) {
    const int V = model.vocab_size();
    const int ranks = data_ranks ? data_ranks->size() : 1;
    const auto rank = static_cast<uint64_t>(data_ranks ? data_ranks->rank() : 0);
    Rng rng(seed ^ (0x9e3779b97f4a7c15ULL * (static_cast<uint64_t>(step) + 1)) ^
            (0xbf58476d1ce4e5b9ULL * rank));
    std::vector<float> logits(static_cast<std::size_t>(B) * T * V);
    std::vector<int32_t> labels(static_cast<std::size_t>(B) * T);
    std::vector<double> probs(V);
    model.zero_grad();
    for (int micro = 0; micro < accum; micro++) {
        const int32_t* tokens = step_inputs + static_cast<long>(micro) * B * T;
        model.forward_logits(tokens, B, T, logits.data());
        for (long i = 0; i < static_cast<long>(B) * T; i++) {
            const float* row = logits.data() + i * V;
            const float mx = *std::max_element(row, row + V);
            double total = 0.0;
            for (int v = 0; v < V; v++) total += probs[v] = std::exp(double(row[v]) - mx);
            double u = rng.uniform() * total;
            int label = V - 1;
            for (int v = 0; v < V; v++) {
                if ((u -= probs[v]) < 0) {
                    label = v;
                    break;
                }
            }
            labels[i] = label;
        }
        model.forward_backward(tokens, labels.data(), B, T,
                               1.0 / (static_cast<double>(B) * T * accum * ranks));
    }
    if (data_ranks)
        all_reduce_gradients(*data_ranks, model.grads().data(), model.grads().size(),
                             model.grads().size());
    clip_model_gradients(model, max_norm);  // where they live: a cuda model's are on the device
}

namespace {

// Routed assignments per expert of each MoE layer in the step just taken, and their imbalance
// (max load / mean load: 1 is perfect balance, E means one expert took everything).
struct MoeLoad {
    std::vector<std::vector<double>> per_layer;
    double mean_imbalance = 0.0, max_imbalance = 0.0;
};

MoeLoad moe_load_of(const LanguageModel& model) {
    MoeLoad m;
    m.per_layer = model.expert_loads();
    for (const std::vector<double>& load : m.per_layer) {
        const double imbalance = load_imbalance(load);
        m.mean_imbalance += imbalance;
        m.max_imbalance = std::max(m.max_imbalance, imbalance);
    }
    if (!m.per_layer.empty()) m.mean_imbalance /= static_cast<double>(m.per_layer.size());
    return m;
}

// A per-rank number and its spread over the ranks.
struct RankSpread {
    double min, mean, max, sum;
};
RankSpread rank_spread(Communicator& comm, double value) {
    if (comm.size() == 1) return {value, value, value, value};
    double v[3] = {value, -value, value};
    comm.all_reduce(v, 2, ReduceOp::Max);
    comm.all_reduce(v + 2, 1, ReduceOp::Sum);
    return {-v[1], v[2] / comm.size(), v[0], v[2]};
}

// One OpenMP thread count per rank: the cores shared by the ranks of this node (launchers say
// how many there are), so that ranks on one node do not oversubscribe it.
int default_threads_per_rank() {
    int local_ranks = 1;
    for (const char* var :
         {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"})
        if (const char* v = std::getenv(var)) {
            local_ranks = std::max(1, std::atoi(v));
            break;
        }
    return std::max(1, omp_get_num_procs() / local_ranks);
}

// "Muon: 24 tensors (1.2M) · AdamW: 14 tensors (0.6M)" for the log.
std::string routing_summary(const Optimizer& opt) {
    std::string out;
    for (const auto& [name, t] : routing_totals(opt))
        out += fmt::format("{}{}: {} tensors ({:.2f}M)", out.empty() ? "" : " · ", name, t.tensors,
                           static_cast<double>(t.parameters) / 1e6);
    return out;
}

}  // namespace

std::unique_ptr<LanguageModel> make_job_model(const JobConfig& cfg, int vocab_size, int max_batch,
                                              int max_seq, const TensorParallel& tp) {
    const ActivationCheckpoint checkpoint =
        activation_checkpoint_from(cfg.activation_checkpoint.mode);
    if (tp.active()) {
        if (cfg.model.name != "agpt")
            fail("model.name = {}: tensor parallelism covers the agpt family only", cfg.model.name);
        ModelArgs args = resolve_model_args(cfg.model.flavor, cfg.model.switches());
        if (vocab_size > 0) args.vocab_size = vocab_size;
        return std::make_unique<Transformer>(args, max_batch, max_seq, checkpoint, tp);
    }
    return make_language_model(cfg.model.name, cfg.model.flavor, cfg.model.switches(), vocab_size,
                               max_batch, max_seq, checkpoint);
}

std::unique_ptr<Optimizer> make_model_optimizer(const JobConfig& cfg, LanguageModel& model) {
    return make_optimizer(
        cfg.optimizer.spec(),
        optim_params_from(model.param_views(), model.params().data(), model.grads().data()));
}

std::string describe_dry_run(const JobConfig& cfg) {
    validate_job_config(cfg);
    // The optimizer needs parameter buffers to route; a batch of one keeps activations small.
    const auto model = make_job_model(cfg, Tokenizer::load(cfg.model.tokenizer).vocab_size(), 1, 1);
    const auto optimizer = make_model_optimizer(cfg, *model);
    return fmt::format(
        "model {}/{}: {:.2f}M parameters, vocab {}\noptimizer {}: state {:.1f} MiB\n{}",
        cfg.model.name, cfg.model.flavor, static_cast<double>(model->num_params()) / 1e6,
        model->vocab_size(), optimizer->name(),
        static_cast<double>(optimizer->state_bytes()) / (1 << 20), routing_table(*optimizer));
}

TrainSummary train(const JobConfig& cfg, std::FILE* progress) {
    validate_job_config(cfg);
    Communicator& comm = world_communicator();
    // Rank 0 alone writes the run folder and prints; the other ranks compute and reduce.
    const bool lead = comm.rank() == 0;
    const int threads = set_thread_count(cfg.training.threads > 0 ? cfg.training.threads
                                                                  : default_threads_per_rank());
    const int B = cfg.training.local_batch_size, T = cfg.training.seq_len;

    // Everything that can fail on bad input is checked before the run folder exists.
    const Tokenizer tokenizer = Tokenizer::load(cfg.model.tokenizer);
    // The mesh checks divide heads (and experts) over ranks.
    ModelArgs mesh_args;
    if (cfg.model.name == "agpt") {
        mesh_args = resolve_model_args(cfg.model.flavor, cfg.model.switches());
    } else if (const Gpt2Flavor* g = find_gpt2_flavor(cfg.model.flavor)) {
        mesh_args.n_heads = mesh_args.n_kv_heads = g->args.n_heads;
    }
    const ParallelMesh mesh = resolve_parallel_mesh(cfg, mesh_args, comm.size());
    const bool on_cuda = cfg.training.device == "cuda";
    if (on_cuda) check_cuda_training(cfg);
    // The ranks that read different data: DP × EP.
    const int data_ranks = mesh.data_ranks();
    const int accum = cfg.grad_accum_steps(data_ranks);
    // Tensor parallelism: the ranks of one data-parallel replica form a TP group; gradients are
    // all-reduced over the ranks that hold the same shards (the DP group).
    std::unique_ptr<Communicator> tp_group, dp_group;
    TensorParallel tp;
    if (mesh.tensor_parallel > 1) {
        tp.rank = mesh.tensor_parallel_rank(comm.rank());
        tp.degree = mesh.tensor_parallel;
        tp_group = comm.split(mesh.data_parallel_rank(comm.rank()), tp.rank);
        dp_group = comm.split(tp.rank, mesh.data_parallel_rank(comm.rank()));
        tp.group = tp_group.get();
    }
    Communicator& data_comm = dp_group ? *dp_group : comm;
    // The ranks that run what rank 0 alone runs without TP (checkpoint gathers, validation, the
    // sample): under TP the first replica's whole TP group, whose forwards are collective.
    const bool lead_group = tp.active() ? mesh.data_parallel_rank(comm.rank()) == 0 : lead;
    const TrainingData data = open_training_data(
        cfg.training.dataset, tokenizer, cfg.validation.split, cfg.training.dataset_registry);
    const std::string& data_path = data.source;
    WindowLoader loader(data.train.sizes, data.train.read, T,
                        static_cast<uint64_t>(cfg.training.seed), mesh.data_rank(comm.rank()),
                        data_ranks);
    if (cfg.validation.enable && sequential_windows(data.val, T).empty())
        fail(
            "validation: the held-out data ({} tokens in {}) is shorter than one window of "
            "seq_len {} + 1; lower validation.split's share, add *val*.bin shards, or set "
            "validation.enable = false",
            data.val.total(), data_path, T);

    TrainSummary summary;
    const fs::path run = fs::path(cfg.job.dump_folder) / cfg.job.name;
    const CheckpointStore checkpoints((run / cfg.checkpoint.folder).string());
    // Re-running the command of a checkpointed run resumes it. A checkpointed run killed before
    // its first checkpoint restarts from step 0 in the same folder, provided the config is the
    // same job's. Any other existing folder is refused by create_run_dir.
    const std::string config_toml = job_config_to_toml(cfg);
    const bool has_checkpoints = lead && !checkpoints.steps().empty();
    const bool reusable = lead && cfg.checkpoint.enable && fs::exists(run) &&
                          (has_checkpoints || (fs::exists(run / "config.toml") &&
                                               read_text(run / "config.toml") == config_toml));
    std::optional<RunLock> lock;
    if (lead) {
        summary.run_dir = reusable ? run.string() : create_run_dir(cfg);
        lock.emplace(run);
    } else {
        summary.run_dir = run.string();
    }
    Log log(lead ? progress : nullptr, lead ? (run / "train.log").string() : std::string());
    if (lead) {
        if (!fs::exists(run / "config.toml") || read_text(run / "config.toml") != config_toml) {
            if (reusable)
                log.line("config changed since the last run in this folder; config.toml updated");
            write_text_atomically(run / "config.toml", config_toml);
        }
        if (reusable && !has_checkpoints) truncate_metrics(run / "metrics.jsonl", 0);
        tokenizer.save_into(run.string());
    }

    // One GPU per rank, chosen before anything is allocated on it.
    if (on_cuda && comm.size() > 1) select_cuda_device(comm.rank());
    // As torchtitan: the tokenizer sets the vocabulary.
    const std::unique_ptr<LanguageModel> model_ptr =
        on_cuda ? make_cuda_model(cfg, tokenizer.vocab_size(), B, T)
                : make_job_model(cfg, tokenizer.vocab_size(), B, T, tp);
    LanguageModel& model = *model_ptr;
    // Tensor and expert parallelism exist in the agpt family; MoE balancing and its metrics go
    // through LanguageModel (the CPU and the cuda model alike). On cuda the layout is the CPU
    // twin's, and the TP sums run over a device communicator of the TP group (NCCL).
    auto* agpt_model = dynamic_cast<Transformer*>(&model);
    std::unique_ptr<Communicator> device_tp_group;
    // cuda clips on the device with clip_tensor_parallel_grad_norm's rule: the split views'
    // squares summed over the TP group, the replicated ones counted once.
    std::optional<ShardedRanges> tp_shards;
    if (on_cuda && tp.active()) {
        device_tp_group = make_cuda_gradient_communicator(*tp_group, model);
        agpt_model = &set_cuda_tensor_parallel(model, tp, device_tp_group.get());
        const std::vector<ParamView>& views = agpt_model->param_views();
        tp_shards = sharded_ranges(views, [&](const ParamView& v) {
            return agpt_model->shards()[&v - views.data()].split != ShardSpec::Split::replicated;
        });
    }
    const bool is_moe = model.agpt_args() != nullptr && model.agpt_args()->is_moe();
    // Expert parallelism (TP = 1): each rank holds E/EP routed experts. The EP group (the ranks
    // of one data-parallel replica) exchanges tokens for them, so a shard's gradient holds the
    // group's tokens; the expert-DP group (the replicas' ranks with the same experts) sums it.
    // On cuda the tokens travel over a device communicator of the EP group (NCCL), and the
    // shard views are the CPU twin's.
    std::optional<ShardedRanges> expert_shards;
    std::unique_ptr<Communicator> ep_group, expert_dp_group, device_ep_group,
        device_expert_dp_group;
    Transformer* ep_model = agpt_model;
    if (mesh.expert_parallel > 1) {
        const int dp_index = mesh.data_parallel_rank(comm.rank());
        const int ep_index = mesh.expert_parallel_rank(comm.rank());
        ep_group = comm.split(dp_index, ep_index);
        expert_dp_group = comm.split(ep_index, dp_index);
        if (on_cuda) {
            device_ep_group = make_cuda_gradient_communicator(*ep_group, model);
            if (expert_dp_group->size() > 1)
                device_expert_dp_group = make_cuda_gradient_communicator(*expert_dp_group, model);
            ep_model = &set_cuda_expert_parallel(model, ep_group.get(), device_ep_group.get());
        } else {
            agpt_model->set_expert_parallel(ep_group.get());
        }
        expert_shards = sharded_ranges(
            model.param_views(), [&](const ParamView& v) { return ep_model->is_expert_shard(v); });
    }
    model.init_weights(cfg.model.init, static_cast<uint64_t>(cfg.training.seed));
    // Checkpoints hold full tensors: with expert shards they pass through a model (and
    // optimizer) of the full shape, gathered before a save and sliced after a load.
    std::unique_ptr<LanguageModel> full_model;
    std::unique_ptr<Optimizer> full_optimizer;
    if (expert_shards && (cfg.checkpoint.enable || !cfg.checkpoint.initial_load_path.empty())) {
        full_model = make_job_model(cfg, tokenizer.vocab_size(), 1, 1);
        full_optimizer = make_model_optimizer(cfg, *full_model);
    }
    const ShardPredicate is_shard = [&](const ParamView& v) {
        return ep_model->is_expert_shard(v);
    };
    // On cuda the gradients stay on the device: their sums go through a device communicator
    // (NCCL) over the data-parallel ranks; the loss and the metrics stay on the host ones.
    const std::unique_ptr<Communicator> device_grad_comm =
        on_cuda && data_comm.size() > 1 ? make_cuda_gradient_communicator(data_comm, model)
                                        : nullptr;
    Communicator& grad_comm = device_grad_comm ? *device_grad_comm : data_comm;
    const auto bucket_floats =
        static_cast<std::size_t>(cfg.parallelism.bucket_mb * (1 << 20) / sizeof(float));
    // ZeRO-1: this rank's optimizer covers the parameters it owns only. On cuda the shard's
    // buffers are on the device, moved by the device communicator; one rank there is ZeRO-0.
    std::unique_ptr<ZeroShard> zero;
    if (mesh.zero == 1 && !on_cuda)
        zero = std::make_unique<ZeroShard>(comm, model.param_views(), model.params().size());
    else if (mesh.zero == 1 && device_grad_comm)
        zero = make_cuda_zero_shard(*device_grad_comm, data_comm, model, bucket_floats);
    const std::unique_ptr<Optimizer> optimizer =
        on_cuda ? (zero ? make_cuda_optimizer(cfg, model, zero->owned_views())
                        : make_cuda_optimizer(cfg, model))
        : zero  ? make_optimizer(cfg.optimizer.spec(),
                                 optim_params_from(zero->owned_views(), model.params().data(),
                                                   model.grads().data()))
                : make_model_optimizer(cfg, model);
    if (cfg.checkpoint.enable) check_tensor_parallel_state(model, *optimizer);
    const auto grad_buffer = [&] {
        return on_cuda ? cuda_device_grads(model) : std::span<float>(model.grads());
    };
    // The micro-batches of the current step, kept for SophiaG's Hessian estimate.
    std::vector<int32_t> step_inputs(static_cast<std::size_t>(B) * T * accum);
    int current_step = 0;
    if (optimizer->needs_hessian_hook())
        optimizer->set_hessian_hook([&] {
            gauss_newton_bartlett(model, step_inputs.data(), B, T, accum, cfg.training.max_norm,
                                  static_cast<uint64_t>(cfg.training.seed), current_step,
                                  comm.size() > 1 ? &comm : nullptr);
        });
    int first_step = 1;
    // Checkpoints hold the full optimizer state: ZeRO-1 loads it whole, then keeps its own part.
    std::unique_ptr<Optimizer> full_state;
    auto load_target = [&] {
        if (!zero) return optimizer.get();
        full_state = make_model_optimizer(cfg, model);
        return full_state.get();
    };
    // Rank 0 picks the checkpoint (the newest that verifies); every rank then loads that one.
    long resume[4] = {-1, 0, 0, 1};  // step, loader epoch, loader position, data ranks
    LanguageModel& stored_model = full_model ? *full_model : model;
    Optimizer* const stored_optimizer = full_model ? full_optimizer.get() : optimizer.get();
    if (has_checkpoints && reusable) {
        const auto state = checkpoints.load_latest(
            cfg.checkpoint.load_step, stored_model, zero ? load_target() : stored_optimizer,
            [&](const std::string& w) { log.line("{}", w); });
        if (!state) fail("{}: no checkpoint could be loaded", checkpoints.root());
        resume[0] = state->step;
        resume[1] = state->loader_epoch;
        resume[2] = state->loader_position;
        resume[3] = state->data_parallel;
    }
    comm.broadcast(resume, sizeof resume, 0);
    if (resume[0] >= 0) {
        if (!lead)
            checkpoints.load(static_cast<int>(resume[0]), stored_model,
                             zero ? load_target() : stored_optimizer);
        if (full_model)
            scatter_expert_shards(*ep_group, *full_model, full_optimizer.get(), model,
                                  optimizer.get(), is_shard);
        if (zero) take_owned_state(*full_state, *optimizer);
        full_state.reset();
        optimizer->train_mode();
        // Every data rank has taken as many windows as rank 0: the position is the same. From
        // another number of ranks, the epoch's first position × ranks windows are taken; the
        // new ranks go on from there (exact when the count divides evenly).
        long position = resume[2];
        if (resume[3] != data_ranks) {
            const long taken = resume[2] * resume[3];
            position = std::min(loader.rank_windows(), (taken + data_ranks - 1) / data_ranks);
            log.line(
                "checkpoint written by {} data-parallel ranks, resumed on {}: {} windows of epoch "
                "{} taken, continuing at position {} per rank{}",
                resume[3], data_ranks, taken, resume[1], position,
                taken % data_ranks == 0 ? "" : " (rounded up: a few windows skipped)");
        }
        loader.restore(resume[1], position);
        first_step = static_cast<int>(resume[0]) + 1;
        if (lead) truncate_metrics(run / "metrics.jsonl", first_step - 1);
        log.line("resumed from {} (step {})", checkpoints.path_of(first_step - 1), first_step - 1);
    } else if (!cfg.checkpoint.initial_load_path.empty()) {
        load_model_weights(cfg.checkpoint.initial_load_path, stored_model);
        if (full_model)
            scatter_expert_shards(*ep_group, *full_model, nullptr, model, nullptr, is_shard);
        log.line("initial weights from {}", cfg.checkpoint.initial_load_path);
    }
    std::optional<JsonlWriter> metrics;
    if (lead) metrics.emplace((run / "metrics.jsonl").string());
    std::unique_ptr<TensorBoardWriter> tensorboard;
    if (lead && cfg.metrics.enable_tensorboard)
        tensorboard =
            std::make_unique<TensorBoardWriter>((run / cfg.metrics.save_tb_folder).string());
    // Checkpoints hold the evaluation weights (Schedule-Free's x), and the optimizer state
    // holds what training needs to go on. ZeRO-1 gathers the owners' state on rank 0 into the
    // full optimizer a ZeRO-0 run has, so the files are the same.
    auto save = [&](int step, bool model_only) {
        // Under TP the first replica's TP group saves together (the store gathers the shards and
        // its rank 0 writes); under EP the first replica's EP group first gathers its experts for
        // rank 0, under ZeRO-1 every rank its optimizer state.
        const bool gathers_experts = full_model && mesh.data_parallel_rank(comm.rank()) == 0;
        if (!lead_group && !gathers_experts && !zero) return 0.0;
        Timer t;
        std::unique_ptr<Optimizer> gathered;
        if (zero && !model_only) {
            if (lead) gathered = make_model_optimizer(cfg, model);
            gather_optimizer_state(comm, *optimizer, gathered.get());
        }
        optimizer->eval_mode();
        if (gathers_experts)
            gather_expert_shards(*ep_group, model, optimizer.get(), *full_model,
                                 full_optimizer.get(), is_shard);
        if (!lead_group) {
            optimizer->train_mode();
            return 0.0;
        }
        Optimizer* saved = model_only ? nullptr : zero ? gathered.get() : stored_optimizer;
        const TrainState state{step, loader.epoch(), loader.position(), data_ranks};
        const std::string where = checkpoints.save(state, stored_model, saved, config_toml);
        optimizer->train_mode();
        if (!lead) return 0.0;
        checkpoints.prune(cfg.checkpoint.keep_latest_k);
        log.line("checkpoint {} ({:.1f}s)", where, t.seconds());
        return t.seconds();
    };
    StopSignals stop_signals;
    double last_save_time = 0.0;
    const LrSchedule schedule(cfg.lr_scheduler, cfg.training.steps);
    // MFU against the GPU's bf16 dense peak on cuda, the CPU's measured fp32 GEMM rate otherwise.
    const CudaPeak cuda_peak = on_cuda ? cuda_peak_tflops() : CudaPeak{};
    const double peak_tflops = on_cuda ? cuda_peak.tflops : measure_gemm_peak_tflops();
    double peak_gpu_gib = on_cuda ? cuda_memory_used_gib() : 0.0;
    const double flops_per_token = model.flops_per_token(T);
    const long rank_tokens_per_step = static_cast<long>(B) * T * accum;
    const long tokens_per_step = rank_tokens_per_step * data_ranks;
    // ZeRO-1 reduce-scatters after backward; expert parallelism sums the replicated ranges only.
    // On cuda the tensor-parallel sums run on the compute stream during backward: the buckets'
    // sums on their own stream would put two NCCL communicators in flight at once, which NCCL
    // does not order across ranks (a hang), so under TP they wait for backward.
    const bool overlap = data_comm.size() > 1 && !zero && !expert_shards &&
                         !(on_cuda && device_tp_group) && cfg.parallelism.overlap_grad_reduce;

    log.line("run {} | data {} ({} train / {} val tokens)", summary.run_dir, data_path,
             data.train.total(), data.val.total());
    log.line("model {}", describe_model(model, cfg.model.name, cfg.model.flavor));
    log.line("batch {}×{} × {} accumulation = {} tokens/step | {} steps | {}", B, T, accum,
             tokens_per_step, cfg.training.steps,
             on_cuda ? fmt::format("cuda {} ({}) | bf16 dense peak {:.4g} TFLOP/s ({})",
                                   cuda_peak.device, cfg.training.mixed_precision_param,
                                   peak_tflops, cuda_peak.source)
                     : fmt::format("{} threads | fp32 GEMM peak {:.3f} TFLOP/s (measured)", threads,
                                   peak_tflops));
    if (const auto switches = cuda::active_switches(); on_cuda && !switches.empty())
        log.line("kernel switches {}", fmt::join(switches, " "));
    log.line("optimizer {} | state {:.1f} MiB | {}", optimizer->name(),
             static_cast<double>(optimizer->state_bytes()) / (1 << 20),
             routing_summary(*optimizer));
    if (comm.size() > 1)
        log.line("parallel {} over {}{} | {} tokens/step per rank | gradient buckets of {} MiB{}",
                 mesh.describe(), comm.backend(),
                 device_grad_comm ? ", gradients over " + device_grad_comm->backend() : "",
                 rank_tokens_per_step, cfg.parallelism.bucket_mb,
                 overlap ? ", reduced during backward" : "");

    std::vector<int32_t> targets(static_cast<std::size_t>(B) * T);
    const double grad_scale = 1.0 / static_cast<double>(tokens_per_step);
    Timer run_timer;
    double window_time = 0.0, window_data = 0.0, window_opt = 0.0;
    int window_steps = 0;
    summary.final_val_loss = std::numeric_limits<double>::quiet_NaN();
    double mean_step_time = 0.0;
    for (int step = first_step; step <= cfg.training.steps; step++) {
        Timer step_timer;
        double data_time = 0.0, loss_sum = 0.0, aux_loss = 0.0;
        model.zero_grad();
        // The last micro-batch's backward finishes the gradients: their buckets are reduced
        // while it runs.
        std::optional<OverlappedGradReduce> reduce;
        for (int micro = 0; micro < accum; micro++) {
            Timer data_timer;
            // Each micro-batch's inputs stay for the step: SophiaG's estimate reruns them.
            int32_t* inputs = step_inputs.data() + static_cast<long>(micro) * B * T;
            loader.next_batch(B, inputs, targets.data());
            data_time += data_timer.seconds();
            if (overlap && micro == accum - 1) {
                const std::span<float> grads = grad_buffer();
                reduce.emplace(grad_comm, grads.data(), grads.size(), bucket_floats);
                model.set_grads_ready([&](std::size_t b, std::size_t e) { reduce->ready(b, e); });
            }
            loss_sum += model.forward_backward(inputs, targets.data(), B, T, grad_scale);
            model.set_grads_ready({});
            aux_loss += model.moe_aux_loss() / accum;
        }
        if (data_comm.size() > 1) {
            // grad_scale is 1/global tokens: the sum over ranks is the global mean's gradient.
            if (zero)
                zero->reduce_scatter_gradients(grad_buffer().data());
            else if (expert_shards) {
                // TP = 1 under EP: grad_comm's data-parallel ranks are every rank.
                float* grads = grad_buffer().data();
                all_reduce_gradient_ranges(grad_comm, grads, expert_shards->replicated,
                                           bucket_floats);
                if (expert_dp_group->size() > 1)
                    all_reduce_gradient_ranges(
                        device_expert_dp_group ? *device_expert_dp_group : *expert_dp_group, grads,
                        expert_shards->sharded, bucket_floats);
            } else if (reduce)
                reduce->finish();
            else {
                const std::span<float> grads = grad_buffer();
                all_reduce_gradients(grad_comm, grads.data(), grads.size(), bucket_floats);
            }
            loss_sum = data_comm.all_reduce_value(loss_sum, ReduceOp::Sum);
            if (is_moe) {
                // Every rank balances on the global load, so the expert biases stay identical;
                // the balance loss is per sequence and needs only the gradient sum above.
                model.sum_expert_loads(data_comm);
                aux_loss = data_comm.all_reduce_value(aux_loss, ReduceOp::Avg);
            }
        }
        const double loss = loss_sum / static_cast<double>(tokens_per_step);
        if (!std::isfinite(loss)) fail("step {}: loss is {}; training diverged", step, loss);
        const double grad_norm =
            zero ? zero->clip_owned(grad_buffer().data(), cfg.training.max_norm)
            : tp.active() && on_cuda
                ? clip_sharded_model_gradients(*tp_group, model, *tp_shards, cfg.training.max_norm)
            : tp.active()
                ? clip_tensor_parallel_grad_norm(model.grads().data(), model.param_views(),
                                                 agpt_model->shards(), cfg.training.max_norm, tp)
            : expert_shards ? clip_sharded_model_gradients(*ep_group, model, *expert_shards,
                                                           cfg.training.max_norm)
                            : clip_model_gradients(model, cfg.training.max_norm);
        current_step = step;
        optimizer->step(schedule.factor(step));
        if (zero && on_cuda)
            cuda_all_gather_parameters(*zero, model);
        else if (zero)
            zero->all_gather_parameters(model.params().data());
        const MoeLoad moe_load = moe_load_of(model);
        model.after_optimizer_step();
        const double lr = optimizer->last_lr();
        const double step_time = step_timer.seconds();
        window_time += step_time;
        window_data += data_time;
        window_opt += optimizer->last_timing().update_s;
        window_steps++;
        summary.final_loss = loss;
        mean_step_time += (step_time - mean_step_time) / (step - first_step + 1);

        if (step % cfg.metrics.log_freq == 0 || step == 1 || step == cfg.training.steps) {
            // Per rank (per device, as torchtitan): tokens this rank processed per second. With
            // several ranks, the mean over ranks, with min and max beside it.
            const RankSpread step_spread = rank_spread(comm, window_time / window_steps);
            const RankSpread tok_spread = rank_spread(
                comm, static_cast<double>(rank_tokens_per_step) * window_steps / window_time);
            const double step_s = step_spread.mean;
            const double tok_per_s = tok_spread.mean;
            const double tflops = flops_per_token * tok_per_s / 1e12;
            const double mfu = 100.0 * tflops / peak_tflops;
            const double eta = step_spread.max * (cfg.training.steps - step);
            nlohmann::json row = {{"step", step},
                                  {"loss", loss},
                                  {"grad_norm", grad_norm},
                                  {"lr", lr},
                                  {"tokens_seen", static_cast<long>(step) * tokens_per_step},
                                  {"tok_per_s", tok_per_s},
                                  {"tflops", tflops},
                                  {"mfu", mfu},
                                  {"step_time_s", step_s},
                                  {"data_time_s", window_data / window_steps},
                                  {"optimizer_time_s", window_opt / window_steps},
                                  {"optimizer_share", window_opt / window_time},
                                  {"mem_gib", current_rss_gib()}};
            if (on_cuda) {
                peak_gpu_gib = std::max(peak_gpu_gib, cuda_memory_used_gib());
                row["gpu_mem_gib"] = peak_gpu_gib;
            }
            if (!moe_load.per_layer.empty()) {
                row["moe_imbalance"] = moe_load.mean_imbalance;
                row["moe_imbalance_max"] = moe_load.max_imbalance;
                row["moe_tokens_per_expert"] = moe_load.per_layer;
            }
            if (model.agpt_args() != nullptr && model.agpt_args()->aux_loss_alpha > 0)
                row["moe_aux_loss"] = aux_loss;
            if (comm.size() > 1) {
                row["ranks"] = comm.size();
                // The TP ranks of a replica process the same tokens.
                row["tok_per_s_total"] = tok_spread.sum / mesh.tensor_parallel;
                row["tok_per_s_min"] = tok_spread.min;
                row["tok_per_s_max"] = tok_spread.max;
                row["step_time_s_min"] = step_spread.min;
                row["step_time_s_max"] = step_spread.max;
            }
            if (metrics) metrics->write(row);
            if (tensorboard) {
                std::vector<std::pair<std::string, double>> scalars;
                for (const auto& [key, value] : row.items())
                    if (key != "step" && value.is_number())
                        scalars.emplace_back(key, value.get<double>());
                tensorboard->scalars(step, scalars);
            }
            log.line(
                "step {:>5}/{} | loss {:.4f} | lr {:.2e} | grad_norm {:.3f} | tok/s {:.0f} | "
                "mfu {:.1f}% | opt {:.1f}% | eta {}{}{}",
                step, cfg.training.steps, loss, lr, grad_norm, tok_per_s, mfu,
                100.0 * window_opt / window_time, format_duration(eta),
                on_cuda ? fmt::format(" | gpu mem {:.2f} GiB", peak_gpu_gib) : std::string(),
                moe_load.per_layer.empty()
                    ? std::string()
                    : fmt::format(" | moe imbalance {:.2f} (max {:.2f})", moe_load.mean_imbalance,
                                  moe_load.max_imbalance));
            window_time = window_data = window_opt = 0.0;
            window_steps = 0;
        }
        // An expert-parallel forward needs every rank of its EP group: all ranks evaluate (the
        // same windows).
        if ((lead_group || expert_shards) && cfg.validation.enable &&
            (step % cfg.validation.freq == 0 || step == cfg.training.steps)) {
            optimizer->eval_mode();
            const double val = evaluate(model, data.val, B, T, cfg.validation.steps);
            optimizer->train_mode();
            summary.final_val_loss = val;
            if (metrics) metrics->write({{"step", step}, {"val_loss", val}});
            if (tensorboard) tensorboard->scalars(step, {{"val_loss", val}});
            log.line("step {:>5}/{} | val_loss {:.4f}", step, cfg.training.steps, val);
        }
        const bool last = step == cfg.training.steps;
        if (cfg.checkpoint.enable && (step % cfg.checkpoint.interval == 0 || last))
            last_save_time = save(step, last && cfg.checkpoint.last_save_model_only);
        // Stop early on a scheduler's signal, or when one more step and a save would overrun the
        // walltime deadline; the checkpoint lets the next job continue exactly here.
        // Every rank must stop at the same step: the decision is reduced over the ranks.
        const double deadline = cfg.job.walltime_deadline;
        double stop[2] = {
            static_cast<double>(g_stop_signal),
            deadline > 0 &&
                    unix_now() + 2 * mean_step_time + std::max(last_save_time, 1.0) > deadline
                ? 1.0
                : 0.0};
        if (comm.size() > 1) comm.all_reduce(stop, 2, ReduceOp::Max);
        const int stop_signal = static_cast<int>(stop[0]);
        const bool out_of_time = stop[1] > 0;
        if (!last && (stop_signal != 0 || out_of_time)) {
            log.line("stopping at step {}: {}", step,
                     stop_signal ? fmt::format("signal {}", stop_signal)
                                 : std::string("walltime deadline near"));
            if (!(cfg.checkpoint.enable && step % cfg.checkpoint.interval == 0)) save(step, false);
            summary.steps = step;
            summary.preempted = true;
            return summary;
        }
    }
    optimizer->eval_mode();  // what training produced is the evaluation point: sample from it
    summary.steps = cfg.training.steps;
    summary.tok_per_s = static_cast<double>(tokens_per_step) *
                        (cfg.training.steps - first_step + 1) / run_timer.seconds();
    if (on_cuda) peak_gpu_gib = std::max(peak_gpu_gib, cuda_memory_used_gib());
    log.line("done in {} | {:.0f} tok/s | final loss {:.4f} | val_loss {} | peak RSS {:.2f} GiB{}",
             format_duration(run_timer.seconds()), summary.tok_per_s, summary.final_loss,
             std::isnan(summary.final_val_loss) ? std::string("off")
                                                : fmt::format("{:.4f}", summary.final_val_loss),
             peak_rss_gib(),
             on_cuda ? fmt::format(" | peak GPU memory {:.2f} GiB", peak_gpu_gib) : std::string());

    if ((lead_group || expert_shards) && cfg.sample.max_new_tokens > 0) {
        std::vector<int32_t> prompt = tokenizer.encode(cfg.sample.prompt);
        if (prompt.empty() && tokenizer.bos_id()) prompt.push_back(*tokenizer.bos_id());
        if (prompt.empty()) prompt.push_back(0);
        SampleOptions opt;
        opt.max_new_tokens = cfg.sample.max_new_tokens;
        opt.temperature = cfg.sample.temperature;
        opt.top_k = cfg.sample.top_k;
        opt.seed = static_cast<uint64_t>(cfg.training.seed);
        summary.sample = tokenizer.decode(sample_tokens(model, T, prompt, opt));
        log.line("sample (temperature {}):\n{}{}", cfg.sample.temperature, cfg.sample.prompt,
                 summary.sample);
    }
    return summary;
}

}  // namespace agpt
