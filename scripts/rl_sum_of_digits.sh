#!/usr/bin/env bash
# The GRPO experiment of docs/rl.md: for each seed, SFT warm-up of a model on sum_of_digits,
# GRPO from it, and held-out accuracy (greedy, 500 prompts of the held-out stream) of both.
# Usage: scripts/rl_sum_of_digits.sh AGPT OUT_DIR [FLAVOR DIFFICULTY SFT_STEPS RL_STEPS SEEDS...]
set -euo pipefail
agpt="$1"
out="$2"
flavor="${3:-tiny}"
difficulty="${4:-2}"
sft_steps="${5:-150}"
rl_steps="${6:-300}"
if [[ $# -gt 6 ]]; then seeds=("${@:7}"); else seeds=(1 2 3); fi
mkdir -p "$out"
for seed in "${seeds[@]}"; do
    sft="sft_${flavor}_d${difficulty}_s${seed}"
    rl="rl_${flavor}_d${difficulty}_s${seed}"
    t0=$(date +%s)
    "$agpt" sft --task sum_of_digits --steps "$sft_steps" --job.dump_folder "$out" \
        --job.name "$sft" --model.flavor "$flavor" --task.difficulty "$difficulty" \
        --training.seed "$seed" --training.local_batch_size 32 --training.threads 1 \
        --lr_scheduler.warmup_steps 10 --metrics.log_freq 50 --rl.eval_n 0 \
        --rl.max_new_tokens 6 >"$out/$sft.out"
    t1=$(date +%s)
    "$agpt" rl --task sum_of_digits --init "$out/$sft" --job.dump_folder "$out" \
        --job.name "$rl" --task.difficulty "$difficulty" --training.seed "$seed" \
        --training.steps "$rl_steps" --training.local_batch_size 32 --training.threads 1 \
        --rl.group_size 8 --rl.prompts_per_step 16 --rl.temperature 1.0 --rl.clip_eps 0.2 \
        --rl.kl_coef 0.04 --rl.epochs_per_batch 1 --rl.max_new_tokens 6 --rl.eval_n 0 \
        --optimizer.lr 3e-4 --lr_scheduler.warmup_steps 10 --lr_scheduler.decay_ratio 0 \
        --metrics.log_freq 25 >"$out/$rl.out"
    t2=$(date +%s)
    before=$("$agpt" rl eval --run "$out/$sft" --n 500 | tail -1)
    after=$("$agpt" rl eval --run "$out/$rl" --n 500 | tail -1)
    echo "seed $seed | sft $((t1 - t0))s, rl $((t2 - t1))s | before: $before | after: $after"
done
