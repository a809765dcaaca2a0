#!/usr/bin/env bash
# TP=2 (two ranks, one thread each) against one process with one thread, and against one process
# with two threads, same model and batch (docs/distributed.md). Alternates the three, REPS times
# each, and prints the median tokens/s of each over the logged windows after the first, and
# rank 0's peak RSS.
# Usage: bench/tp_throughput.sh path/to/agpt [REPS] [extra train overrides...]
source "$(dirname "$0")/lib.sh"
common=(train --job.dump_folder "$work" --model.flavor small --training.seq_len 128
    --training.local_batch_size 8 --training.steps 40 --metrics.log_freq 10
    --validation.enable false --sample.max_new_tokens 0 "$@")
for r in $(seq 1 "$reps"); do
    "$agpt" "${common[@]}" --job.name "one1_$r" --training.threads 1 >"$work/one1_$r.log"
    "$agpt" "${common[@]}" --job.name "one2_$r" --training.threads 2 >"$work/one2_$r.log"
    mpirun_np 2 "$agpt" "${common[@]}" \
        --job.name "tp2_$r" --training.threads 1 --parallelism.tensor_parallel_degree 2 \
        >"$work/tp2_$r.log"
done
summarize one1="1 process x 1 thread" one2="1 process x 2 threads" tp2="TP=2 x 1 thread"
