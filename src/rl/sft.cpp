#include "rl/sft.h"

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/timer.h"
#include "data/tokenizer.h"
#include "model/model_args.h"
#include "model/model_zoo.h"
#include "optim/lr_schedule.h"
#include "rl/rollout.h"
#include "rl/run_folder.h"
#include "train/checkpoint.h"
#include "train/cuda_training.h"
#include "train/metrics.h"
#include "train/trainer.h"

namespace agpt {

namespace fs = std::filesystem;

const RLTask& job_task(const JobConfig& cfg, int& difficulty) {
    if (cfg.task.name.empty())
        fail("task.name is empty; pass --task NAME (agpt rl tasks lists them)");
    const RLTask* task = nullptr;
    try {
        task = &get_task(cfg.task.name);
    } catch (const Error& e) {
        fail("task.name = '{}': {}", cfg.task.name, e.what());
    }
    difficulty = cfg.task.difficulty > 0 ? cfg.task.difficulty : task->default_difficulty();
    check_difficulty(*task, difficulty, "task.difficulty");
    return *task;
}

std::unique_ptr<LanguageModel> make_rl_model(const JobConfig& cfg, const ModelArgs& args,
                                             int max_batch, int max_seq) {
    if (cfg.training.device != "cuda")
        return std::make_unique<Transformer>(
            args, max_batch, max_seq, activation_checkpoint_from(cfg.activation_checkpoint.mode));
    check_cuda_training(cfg);
    return make_cuda_model(cfg, args, max_batch, max_seq);
}

std::string rl_device_note(const JobConfig& cfg) {
    if (cfg.training.device != "cuda") return {};
    return fmt::format(
        " | cuda {}: training on the device, sampling on the CPU twin (weights downloaded after "
        "each optimizer step)",
        cfg.training.mixed_precision_param);
}

SftSummary run_sft(const JobConfig& cfg, std::FILE* progress) {
    validate_job_config(cfg);
    int difficulty = 0;
    const RLTask& task = job_task(cfg, difficulty);
    set_thread_count(cfg.training.threads);
    const Tokenizer tokenizer = Tokenizer::load(cfg.model.tokenizer);
    const int32_t eos = tokenizer.eos_id().value_or(-1);
    if (cfg.model.name != "agpt")
        fail("model.name = {}: sft and rl run the agpt family (their sampling uses its KV cache)",
             cfg.model.name);
    ModelArgs args = resolve_model_args(cfg.model.flavor, cfg.model.switches());
    args.vocab_size = tokenizer.vocab_size();
    const int B = cfg.training.local_batch_size;
    const int T = std::min(args.max_seq_len, 160);
    const uint64_t seed = static_cast<uint64_t>(cfg.training.seed);
    encode_prompt(tokenizer, "");  // fails early on a tokenizer without bos/eos

    const auto model_ptr = make_rl_model(cfg, args, B, T);
    LanguageModel& model = *model_ptr;
    model.init_weights(cfg.model.init, seed);
    const auto optimizer = cfg.training.device == "cuda" ? make_cuda_optimizer(cfg, model)
                                                         : make_model_optimizer(cfg, model);
    if (optimizer->needs_hessian_hook())
        fail("optimizer.name = '{}' needs a Hessian estimate, which agpt sft does not provide",
             cfg.optimizer.name);

    const RlRunFolder folder = open_rl_run_folder(cfg);
    const fs::path run(folder.dir);
    tokenizer.save_into(folder.dir);
    RlLog log(progress, (run / "sft.log").string());
    const CheckpointStore checkpoints((run / cfg.checkpoint.folder).string());
    int first_step = 1;
    if (folder.resume) {
        const auto state = checkpoints.load_latest(cfg.checkpoint.load_step, model, optimizer.get(),
                                                   [&](const std::string& w) { log.write(w); });
        if (!state) fail("{}: no checkpoint could be loaded", checkpoints.root());
        optimizer->train_mode();
        first_step = state->step + 1;
        truncate_metrics((run / "metrics.jsonl").string(), state->step);
        log.line("resumed from {} (step {})", checkpoints.path_of(state->step), state->step);
    } else if (!cfg.checkpoint.initial_load_path.empty()) {
        load_model_weights(cfg.checkpoint.initial_load_path, model);
    }
    JsonlWriter metrics((run / "metrics.jsonl").string());
    const std::string config_toml = job_config_to_toml(cfg);
    auto save = [&](int step) {
        optimizer->eval_mode();
        const std::string where =
            checkpoints.save({step, 0, 0}, model, optimizer.get(), config_toml);
        optimizer->train_mode();
        checkpoints.prune(cfg.checkpoint.keep_latest_k);
        log.line("checkpoint {}", where);
    };

    log.line(
        "sft {} | task {} (difficulty {}) | model agpt/{} {:.2f}M params | activations {:.2f} "
        "MiB (checkpointing {}) | batch {} | {} steps{}",
        folder.dir, task.name(), difficulty, cfg.model.flavor,
        static_cast<double>(args.num_params()) / 1e6,
        static_cast<double>(model.activation_bytes()) / (1 << 20), cfg.activation_checkpoint.mode,
        B, cfg.training.steps, rl_device_note(cfg));
    const LrSchedule schedule(cfg.lr_scheduler, cfg.training.steps);
    SftSummary summary;
    summary.run_dir = folder.dir;
    Timer run_timer, window;
    long window_tokens = 0;
    for (int step = first_step; step <= cfg.training.steps; step++) {
        std::vector<std::vector<int32_t>> rows;
        std::vector<int> starts;
        for (int b = 0; b < B; b++) {
            const TaskExample ex =
                task.generate(task_seed(seed, SeedStream::SftPrompt, static_cast<uint64_t>(step),
                                        static_cast<uint64_t>(b)),
                              difficulty);
            auto row = encode_prompt(tokenizer, ex.prompt);
            starts.push_back(static_cast<int>(row.size()));
            for (int32_t id : tokenizer.encode(ex.answer)) row.push_back(id);
            row.push_back(eos);
            if (static_cast<int>(row.size()) - 1 > T)
                fail("task {}: an example needs {} positions, more than the {} allocated",
                     task.name(), row.size() - 1, T);
            rows.push_back(std::move(row));
        }
        const PackedBatch batch = pack_rows(rows, starts, eos);
        long counted = 0;
        for (int32_t t : batch.targets) counted += t >= 0;
        model.zero_grad();
        const double loss_sum = model.forward_backward(batch.inputs.data(), batch.targets.data(),
                                                       batch.B, batch.T, 1.0 / counted);
        const double loss = loss_sum / counted;
        if (!std::isfinite(loss)) fail("step {}: loss is {}; training diverged", step, loss);
        const double grad_norm = clip_model_gradients(model, cfg.training.max_norm);
        optimizer->step(schedule.factor(step));
        model.after_optimizer_step();
        window_tokens += static_cast<long>(batch.B) * batch.T;
        summary.final_loss = loss;
        if (step % cfg.metrics.log_freq == 0 || step == 1 || step == cfg.training.steps) {
            const double s = window.seconds();
            metrics.write({{"step", step},
                           {"loss", loss},
                           {"grad_norm", grad_norm},
                           {"lr", optimizer->last_lr()},
                           {"tok_per_s", window_tokens / s}});
            log.line(
                "step {:>5}/{} | answer loss {:.4f} | lr {:.2e} | grad_norm {:.3f} | tok/s {:.0f}",
                step, cfg.training.steps, loss, optimizer->last_lr(), grad_norm, window_tokens / s);
            window.reset();
            window_tokens = 0;
        }
        const bool last = step == cfg.training.steps;
        if (last || (cfg.checkpoint.enable && step % cfg.checkpoint.interval == 0)) save(step);
    }
    optimizer->eval_mode();
    summary.steps = cfg.training.steps;
    summary.seconds = run_timer.seconds();
    if (cfg.rl.eval_n > 0) {
        const TaskAccuracy acc =
            evaluate_task_accuracy(sampling_transformer(model), tokenizer, task, difficulty,
                                   cfg.rl.eval_n, kDefaultEvalSeed, cfg.rl.max_new_tokens);
        summary.accuracy = acc.accuracy();
        metrics.write({{"step", cfg.training.steps},
                       {"heldout_accuracy", acc.accuracy()},
                       {"heldout_n", acc.n}});
        for (const auto& e : acc.examples) log.line("  {}", e);
        log.line("held-out accuracy {:.1f}% ({}/{}, greedy)", 100 * acc.accuracy(), acc.correct,
                 acc.n);
    }
    log.line("done in {}", format_duration(summary.seconds));
    return summary;
}

}  // namespace agpt
