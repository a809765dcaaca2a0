#pragma once
// Each subcommand lives in its own cmd_*.cpp: it declares its flags on a CLI11 subcommand and,
// when chosen, calls one library function. To add one: write cmd_NAME.cpp with
// `void add_NAME_command(CLI::App& app, Action& action)`, declare it here and list it in main.cpp.
#include <CLI/CLI.hpp>

#include <functional>

#include "train/config.h"

namespace agpt::cli {

// What the chosen subcommand runs after parsing; returns the exit code.
using Action = std::function<int()>;

// Config overrides (--section.key value) are the arguments CLI11 did not recognise.
ConfigOverrides overrides_from(const CLI::App* sub);

void add_train_command(CLI::App& app, Action& action);
void add_bench_command(CLI::App& app, Action& action);
void add_data_command(CLI::App& app, Action& action);
void add_tokenizer_command(CLI::App& app, Action& action);
void add_merge_command(CLI::App& app, Action& action);
void add_plot_command(CLI::App& app, Action& action);
void add_export_command(CLI::App& app, Action& action);
void add_import_command(CLI::App& app, Action& action);
void add_generate_command(CLI::App& app, Action& action);
void add_doctor_command(CLI::App& app, Action& action);
void add_models_command(CLI::App& app, Action& action);
void add_optimizers_command(CLI::App& app, Action& action);
void add_plan_command(CLI::App& app, Action& action);
void add_dashboard_command(CLI::App& app, Action& action);
void add_compete_command(CLI::App& app, Action& action);
void add_lr_find_command(CLI::App& app, Action& action);
void add_rl_command(CLI::App& app, Action& action);
void add_sft_command(CLI::App& app, Action& action);
void add_launch_command(CLI::App& app, Action& action);
void add_submit_command(CLI::App& app, Action& action);
void add_scale_command(CLI::App& app, Action& action);

}  // namespace agpt::cli
