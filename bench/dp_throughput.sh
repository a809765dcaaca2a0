#!/usr/bin/env bash
# DP=2 with one thread per rank against one process with two threads, same model and global
# batch (docs/distributed.md). Alternates the two, REPS times each, and prints the median total
# tokens/s of each over the logged windows after the first.
# Usage: bench/dp_throughput.sh path/to/agpt [REPS] [extra train overrides...]
source "$(dirname "$0")/lib.sh"
common=(train --job.dump_folder "$work" --model.flavor small --training.seq_len 128
    --training.global_batch_size 16 --training.steps 40 --metrics.log_freq 10
    --validation.enable false --sample.max_new_tokens 0 "$@")
for r in $(seq 1 "$reps"); do
    "$agpt" "${common[@]}" --job.name "one_$r" --training.local_batch_size 16 \
        --training.threads 2 >/dev/null
    mpirun_np 2 "$agpt" "${common[@]}" \
        --job.name "dp2_$r" --training.local_batch_size 8 --training.threads 1 >/dev/null
done
summarize one="1 process x 2 threads" dp2="DP=2 x 1 thread"
