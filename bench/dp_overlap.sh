#!/usr/bin/env bash
# DP=2 (one thread per rank) with the gradient all-reduce overlapped with backward
# (parallelism.overlap_grad_reduce = true, the default) against the all-reduce after backward,
# same model, batch and buckets (docs/distributed.md). Alternates the two, REPS times each, and
# prints the median total tokens/s of each over the logged windows after the first.
# Usage: bench/dp_overlap.sh path/to/agpt [REPS] [extra train overrides...]
source "$(dirname "$0")/lib.sh"
common=(train --job.dump_folder "$work" --model.flavor small --training.seq_len 128
    --training.global_batch_size 16 --training.local_batch_size 8 --training.threads 1
    --training.steps 40 --metrics.log_freq 10 --validation.enable false
    --sample.max_new_tokens 0 "$@")
for r in $(seq 1 "$reps"); do
    for overlap in true false; do
        mpirun_np 2 "$agpt" "${common[@]}" \
            --job.name "${overlap}_$r" --parallelism.overlap_grad_reduce "$overlap" >/dev/null
    done
done
summarize false="after backward" true="overlapped with backward"
