#!/usr/bin/env bash
# Expert parallelism EP=2 against data parallelism DP=2 on a MoE flavor, one thread per rank,
# same global batch (docs/distributed.md). Alternates the two, REPS times each, and prints the
# median total tokens/s of each over the logged windows after the first.
# Usage: bench/ep_throughput.sh path/to/agpt [REPS] [extra train overrides...]
source "$(dirname "$0")/lib.sh"
common=(train --job.dump_folder "$work" --model.flavor moe_debug --training.seq_len 128
    --training.local_batch_size 8 --training.global_batch_size 16 --training.steps 40
    --training.threads 1 --metrics.log_freq 10 --validation.enable false
    --sample.max_new_tokens 0 "$@")
for r in $(seq 1 "$reps"); do
    for mode in dp2 ep2; do
        degree=$([[ $mode == ep2 ]] && echo 2 || echo 1)
        mpirun_np 2 "$agpt" "${common[@]}" \
            --job.name "${mode}_$r" --parallelism.expert_parallel_degree "$degree" >/dev/null
    done
done
summarize dp2="DP=2 x 1 thread" ep2="EP=2 x 1 thread"
