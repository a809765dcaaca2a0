#include "rl/grpo.h"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/timer.h"
#include "model/model_zoo.h"
#include "optim/lr_schedule.h"
#include "rl/grpo_math.h"
#include "rl/rollout.h"
#include "rl/run_folder.h"
#include "rl/sft.h"
#include "tools/run_model.h"
#include "train/checkpoint.h"
#include "train/cuda_training.h"
#include "train/metrics.h"
#include "train/trainer.h"

namespace agpt {

namespace fs = std::filesystem;

namespace {

// The sampled batch of one step, as rows for teacher-forced scoring.
struct Rollouts {
    std::vector<std::vector<int32_t>> rows;  // [bos] prompt completion
    std::vector<int> completion_start;
    std::vector<double> rewards, advantages;
    long completion_tokens = 0;
};

// Per-token log-probabilities of every row's completion tokens, micro-batch by micro-batch;
// out[row] holds one value per completion token.
std::vector<std::vector<double>> completion_logprobs(LanguageModel& model, const Rollouts& r,
                                                     int micro, int32_t pad) {
    std::vector<std::vector<double>> out(r.rows.size());
    std::vector<double> lp;
    for (std::size_t m = 0; m < r.rows.size(); m += micro) {
        const std::size_t end = std::min(r.rows.size(), m + micro);
        const std::vector<std::vector<int32_t>> rows(r.rows.begin() + m, r.rows.begin() + end);
        const std::vector<int> starts(r.completion_start.begin() + m,
                                      r.completion_start.begin() + end);
        const PackedBatch p = pack_rows(rows, starts, pad);
        lp.assign(p.inputs.size(), 0.0);
        model_token_logprobs(model, p.inputs.data(), p.targets.data(), p.B, p.T, lp.data());
        for (int b = 0; b < p.B; b++) {
            auto& o = out[m + b];
            for (int t = 0; t < p.T; t++)
                if (p.targets[static_cast<std::size_t>(b) * p.T + t] >= 0)
                    o.push_back(lp[static_cast<std::size_t>(b) * p.T + t]);
        }
    }
    return out;
}

volatile std::sig_atomic_t g_grpo_stop = 0;
extern "C" void on_grpo_stop(int sig) {
    g_grpo_stop = sig;
}

}  // namespace

GrpoSummary run_grpo(const JobConfig& given, std::FILE* progress) {
    validate_job_config(given);
    int difficulty = 0;
    const RLTask& task = job_task(given, difficulty);
    if (given.rl.init.empty())
        fail(
            "rl.init is empty; pass --init RUN_DIR (a run folder with a checkpoint, e.g. from agpt "
            "sft)");
    set_thread_count(given.training.threads);
    const auto& rc = given.rl;
    const int micro = given.training.local_batch_size;

    // The policy and the frozen reference both start from the init run's newest checkpoint.
    const int capacity_probe = 1;
    RunModel init = load_run_model(given.rl.init, -1, 1, capacity_probe);
    JobConfig cfg = given;
    cfg.model = init.config.model;  // the run's model is the init run's
    validate_job_config(cfg);
    const Tokenizer& tokenizer = init.tokenizer;
    const int32_t eos = tokenizer.eos_id().value_or(-1);
    encode_prompt(tokenizer, "");
    const ModelArgs args = init.model->args();
    const int T = rl_sequence_capacity(*init.model, rc.max_new_tokens);
    // The policy trains; the reference only scores, on the same device and in the same precision
    // (at the first step π_ref = π_old to the bit: the KL starts at 0 on cuda in bf16 too).
    const auto model_ptr = make_rl_model(cfg, args, micro, T),
               reference = make_rl_model(cfg, args, micro, T);
    LanguageModel& model = *model_ptr;
    const fs::path init_ckpt = init.checkpoint_dir;
    init.model.reset();
    load_model_weights(init_ckpt.string(), model);
    load_model_weights(init_ckpt.string(), *reference);
    const auto optimizer = cfg.training.device == "cuda" ? make_cuda_optimizer(cfg, model)
                                                         : make_model_optimizer(cfg, model);
    if (optimizer->needs_hessian_hook())
        fail("optimizer.name = '{}' needs a Hessian estimate, which agpt rl does not provide",
             cfg.optimizer.name);

    const RlRunFolder folder = open_rl_run_folder(cfg);
    const fs::path run(folder.dir);
    tokenizer.save_into(folder.dir);
    RlLog log(progress, (run / "rl.log").string());
    const CheckpointStore checkpoints((run / cfg.checkpoint.folder).string());
    const std::string config_toml = job_config_to_toml(cfg);
    int first_step = 1;
    if (folder.resume) {
        const auto state = checkpoints.load_latest(cfg.checkpoint.load_step, model, optimizer.get(),
                                                   [&](const std::string& w) { log.write(w); });
        if (!state) fail("{}: no checkpoint could be loaded", checkpoints.root());
        optimizer->train_mode();
        first_step = state->step + 1;
        truncate_metrics((run / "metrics.jsonl").string(), state->step);
        log.line("resumed from {} (step {})", checkpoints.path_of(state->step), state->step);
    }
    JsonlWriter metrics((run / "metrics.jsonl").string());
    auto save = [&](int step) {
        optimizer->eval_mode();
        const std::string where =
            checkpoints.save({step, 0, 0}, model, optimizer.get(), config_toml);
        optimizer->train_mode();
        checkpoints.prune(cfg.checkpoint.keep_latest_k);
        log.line("checkpoint {}", where);
    };

    const int G = rc.group_size, P = rc.prompts_per_step, E = rc.epochs_per_batch;
    const uint64_t seed = static_cast<uint64_t>(cfg.training.seed);
    log.line(
        "rl {} | task {} (difficulty {}) | init {} | model agpt/{} {:.2f}M params | policy "
        "activations {:.2f} MiB (checkpointing {}){}",
        folder.dir, task.name(), difficulty, init_ckpt.string(), cfg.model.flavor,
        static_cast<double>(args.num_params()) / 1e6,
        static_cast<double>(model.activation_bytes()) / (1 << 20), cfg.activation_checkpoint.mode,
        rl_device_note(cfg));
    log.line(
        "GRPO: {} prompts × {} completions | temperature {} | clip {} | kl {} | {} epochs | "
        "{} steps | optimizer {}",
        P, G, rc.temperature, rc.clip_eps, rc.kl_coef, E, cfg.training.steps, optimizer->name());
    GrpoSummary summary;
    summary.run_dir = folder.dir;
    auto heldout = [&](const char* when) {
        optimizer->eval_mode();
        const TaskAccuracy acc =
            evaluate_task_accuracy(sampling_transformer(model), tokenizer, task, difficulty,
                                   rc.eval_n, kDefaultEvalSeed, rc.max_new_tokens);
        optimizer->train_mode();
        log.line("held-out accuracy {}: {:.1f}% ({}/{}, greedy)", when, 100 * acc.accuracy(),
                 acc.correct, acc.n);
        return acc.accuracy();
    };
    if (rc.eval_n > 0 && !folder.resume) {
        summary.accuracy_before = heldout("before");
        metrics.write({{"step", 0}, {"heldout_accuracy", summary.accuracy_before}});
    }

    const LrSchedule schedule(cfg.lr_scheduler, cfg.training.steps * E);
    g_grpo_stop = 0;
    auto old_term = std::signal(SIGTERM, on_grpo_stop);
    auto old_usr1 = std::signal(SIGUSR1, on_grpo_stop);
    Timer run_timer;
    for (int step = first_step; step <= cfg.training.steps; step++) {
        Timer step_timer, gen_timer;
        // On cuda the CPU twin that samples gets this step's weights here, once.
        Transformer& sampler = sampling_transformer(model);
        Rollouts r;
        for (int p = 0; p < P; p++) {
            const TaskExample ex =
                task.generate(task_seed(seed, SeedStream::RlPrompt, static_cast<uint64_t>(step),
                                        static_cast<uint64_t>(p)),
                              difficulty);
            const auto prompt = encode_prompt(tokenizer, ex.prompt);
            std::vector<uint64_t> seeds;
            for (int g = 0; g < G; g++)
                seeds.push_back(task_seed(seed, SeedStream::Sampling, static_cast<uint64_t>(step),
                                          static_cast<uint64_t>(p) * G + g));
            for (const auto& completion :
                 sample_group(sampler, prompt, rc.max_new_tokens, rc.temperature, eos, seeds)) {
                r.rewards.push_back(task.reward(ex, tokenizer.decode(completion)));
                r.completion_start.push_back(static_cast<int>(prompt.size()));
                auto row = prompt;
                row.insert(row.end(), completion.begin(), completion.end());
                r.rows.push_back(std::move(row));
                r.completion_tokens += static_cast<long>(completion.size());
            }
        }
        const double gen_s = gen_timer.seconds();
        r.advantages = group_advantages(r.rewards, G);

        Timer train_timer;
        const auto old_lp = completion_logprobs(model, r, micro, eos);
        std::vector<std::vector<double>> ref_lp;
        if (rc.kl_coef > 0) ref_lp = completion_logprobs(*reference, r, micro, eos);
        const double n_rows = static_cast<double>(r.rows.size());
        double loss_sum = 0, kl_sum = 0, clipped = 0, grad_norm = 0;
        long scored_tokens = 0;
        for (int epoch = 1; epoch <= E; epoch++) {
            // In the first epoch the policy is π_old: its log-probabilities are old_lp.
            const auto cur_lp = epoch == 1 ? old_lp : completion_logprobs(model, r, micro, eos);
            model.zero_grad();
            loss_sum = kl_sum = clipped = 0;
            scored_tokens = 0;
            for (std::size_t m = 0; m < r.rows.size(); m += micro) {
                const std::size_t end = std::min(r.rows.size(), m + micro);
                const std::vector<std::vector<int32_t>> rows(r.rows.begin() + m,
                                                             r.rows.begin() + end);
                const std::vector<int> starts(r.completion_start.begin() + m,
                                              r.completion_start.begin() + end);
                const PackedBatch p = pack_rows(rows, starts, eos);
                std::vector<float> weights(p.inputs.size(), 0.0f);
                for (int b = 0; b < p.B; b++) {
                    const std::size_t i = m + b;
                    const double len = static_cast<double>(cur_lp[i].size());
                    int k = 0;
                    for (int t = 0; t < p.T; t++) {
                        const std::size_t at = static_cast<std::size_t>(b) * p.T + t;
                        if (p.targets[at] < 0) continue;
                        const double ref = rc.kl_coef > 0 ? ref_lp[i][k] : 0.0;
                        const GrpoTokenTerms tt =
                            grpo_token_terms(cur_lp[i][k], old_lp[i][k], ref, r.advantages[i],
                                             rc.clip_eps, rc.kl_coef);
                        // Cross-entropy is −logp: its weight is −∂loss/∂logp.
                        weights[at] = static_cast<float>(-tt.dloss_dlogp / (len * n_rows));
                        loss_sum += tt.loss / (len * n_rows);
                        kl_sum += tt.kl;
                        clipped += tt.clipped;
                        scored_tokens++;
                        k++;
                    }
                }
                model_forward_backward_weighted(model, p.inputs.data(), p.targets.data(),
                                                weights.data(), p.B, p.T);
            }
            grad_norm = clip_model_gradients(model, cfg.training.max_norm);
            optimizer->step(schedule.factor((step - 1) * E + epoch));
            model.after_optimizer_step();
        }
        const double train_s = train_timer.seconds();
        if (!std::isfinite(loss_sum))
            fail("step {}: loss is {}; training diverged", step, loss_sum);

        double mean = 0, var = 0, correct = 0;
        for (double x : r.rewards) mean += x, correct += x == 1.0;
        mean /= n_rows;
        for (double x : r.rewards) var += (x - mean) * (x - mean);
        const double reward_std = std::sqrt(var / n_rows);
        long train_tokens = 0;
        for (const auto& row : r.rows) train_tokens += static_cast<long>(row.size()) - 1;
        if (step % cfg.metrics.log_freq == 0 || step == first_step || step == cfg.training.steps) {
            const double denom = std::max<long>(scored_tokens, 1);
            metrics.write({{"step", step},
                           {"loss", loss_sum},
                           {"reward_mean", mean},
                           {"reward_std", reward_std},
                           {"accuracy", correct / n_rows},
                           {"kl", kl_sum / denom},
                           {"clip_frac", clipped / denom},
                           {"completion_len", static_cast<double>(r.completion_tokens) / n_rows},
                           {"grad_norm", grad_norm},
                           {"lr", optimizer->last_lr()},
                           {"gen_tok_per_s", r.completion_tokens / gen_s},
                           // Passes over the batch: π_old, π_ref, E forward+backward and
                           // E−1 re-scorings of the moved policy.
                           {"train_tok_per_s", train_tokens * (2 * E + (rc.kl_coef > 0)) / train_s},
                           {"gen_time_s", gen_s},
                           {"step_time_s", step_timer.seconds()}});
            log.line(
                "step {:>4}/{} | reward {:.3f} ± {:.3f} | acc {:.1f}% | kl {:.4f} | clip {:.3f} | "
                "len {:.1f} | gen {:.0f} tok/s | {:.1f}s",
                step, cfg.training.steps, mean, reward_std, 100 * correct / n_rows, kl_sum / denom,
                clipped / denom, static_cast<double>(r.completion_tokens) / n_rows,
                r.completion_tokens / gen_s, step_timer.seconds());
        }
        const bool last = step == cfg.training.steps;
        if (last || (cfg.checkpoint.enable && step % cfg.checkpoint.interval == 0)) save(step);
        if (!last && g_grpo_stop != 0) {
            log.line("stopping at step {}: signal {}", step, static_cast<int>(g_grpo_stop));
            if (!(cfg.checkpoint.enable && step % cfg.checkpoint.interval == 0)) save(step);
            summary.steps = step;
            summary.preempted = true;
            std::signal(SIGTERM, old_term);
            std::signal(SIGUSR1, old_usr1);
            return summary;
        }
    }
    std::signal(SIGTERM, old_term);
    std::signal(SIGUSR1, old_usr1);
    summary.steps = cfg.training.steps;
    summary.seconds = run_timer.seconds();
    if (rc.eval_n > 0) {
        summary.accuracy_after = heldout("after");
        metrics.write({{"step", cfg.training.steps}, {"heldout_accuracy", summary.accuracy_after}});
    }
    optimizer->eval_mode();
    log.line("done in {}", format_duration(summary.seconds));
    return summary;
}

}  // namespace agpt
