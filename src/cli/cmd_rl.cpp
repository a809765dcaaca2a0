#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "rl/eval.h"
#include "rl/grpo.h"
#include "rl/sft.h"
#include "rl/task.h"
#include "train/trainer.h"

namespace agpt::cli {

namespace {

// --task and --init are the [task] / [rl] keys; the rest are --section.key overrides.
ConfigOverrides with_flags(ConfigOverrides o, const std::string& task, const std::string& init) {
    if (!task.empty()) o.insert(o.begin(), {"task.name", task});
    if (!init.empty()) o.insert(o.begin(), {"rl.init", init});
    return o;
}

}  // namespace

void add_rl_command(CLI::App& app, Action& action) {
    struct Options {
        std::string config_path, task, init;
        bool print_config = false;
        RlEvalOptions eval;
    };
    auto opt = std::make_shared<Options>();
    auto* rl = app.add_subcommand("rl", "RL fine-tuning with GRPO on a task (docs/rl.md)");
    rl->add_option("--config", opt->config_path, "TOML job config");
    rl->add_option("--task", opt->task, "task name (agpt rl tasks)");
    rl->add_option(
        "--init", opt->init,
        "run folder (its newest checkpoint) or Hugging Face Llama folder that starts the policy");
    rl->add_flag("--print-config", opt->print_config, "Print the resolved config and exit");
    rl->allow_extras();
    rl->footer(
        "GRPO keys: --rl.group_size 8 --rl.prompts_per_step 16 --rl.temperature 1.0 "
        "--rl.clip_eps 0.2 --rl.kl_coef 0.04 --rl.epochs_per_batch 1 "
        "--rl.max_new_tokens 32; any other key as --section.key value");

    auto* tasks = rl->add_subcommand("tasks", "List the registered tasks");
    tasks->callback([&action] {
        action = [] {
            std::fputs(task_table().c_str(), stdout);
            return 0;
        };
    });

    auto* eval = rl->add_subcommand("eval", "Held-out accuracy of a run's model on a task");
    eval->add_option("--run", opt->eval.run_dir, "run folder")->required();
    eval->add_option("--task", opt->eval.task, "task (default: the run's)");
    eval->add_option("--n", opt->eval.n, "held-out prompts")->capture_default_str();
    eval->add_option("--seed", opt->eval.seed, "held-out seed")->capture_default_str();
    eval->add_option("--difficulty", opt->eval.difficulty, "0: the run's / the task's default");
    eval->add_option("--step", opt->eval.step, "checkpoint step; -1: the newest");
    eval->add_option("--max-new-tokens", opt->eval.max_new_tokens,
                     "0: the run's rl.max_new_tokens");
    eval->callback([opt, &action] {
        action = [opt] {
            const RlEvalResult r = evaluate_run_on_task(opt->eval);
            for (const auto& e : r.accuracy.examples) std::printf("  %s\n", e.c_str());
            std::printf("%s (difficulty %d), step %d: accuracy %.1f%% (%d/%d, greedy, seed %llu)\n",
                        r.task.c_str(), r.difficulty, r.step, 100 * r.accuracy.accuracy(),
                        r.accuracy.correct, r.accuracy.n,
                        static_cast<unsigned long long>(opt->eval.seed));
            return 0;
        };
    });

    rl->callback([rl, opt, &action] {
        if (!rl->get_subcommands().empty()) return;
        action = [rl, opt] {
            const JobConfig cfg = load_job_config(
                opt->config_path, with_flags(overrides_from(rl), opt->task, opt->init));
            if (opt->print_config) {
                std::fputs(job_config_to_toml(cfg).c_str(), stdout);
                return 0;
            }
            return run_grpo(cfg).preempted ? kExitPreempted : 0;
        };
    });
}

void add_sft_command(CLI::App& app, Action& action) {
    struct Options {
        std::string config_path, task;
        int steps = 0;
    };
    auto opt = std::make_shared<Options>();
    auto* sft = app.add_subcommand("sft", "Supervised warm-up on generated task examples");
    sft->add_option("--config", opt->config_path, "TOML job config");
    sft->add_option("--task", opt->task, "task name (agpt rl tasks)");
    sft->add_option("--steps", opt->steps, "optimizer steps (training.steps)");
    sft->allow_extras();
    sft->footer("Any config key can be overridden: --section.key value");
    sft->callback([sft, opt, &action] {
        action = [sft, opt] {
            ConfigOverrides o = with_flags(overrides_from(sft), opt->task, "");
            if (opt->steps != 0)
                o.insert(o.begin(), {"training.steps", std::to_string(opt->steps)});
            run_sft(load_job_config(opt->config_path, o));
            return 0;
        };
    });
}

}  // namespace agpt::cli
