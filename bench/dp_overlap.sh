#!/usr/bin/env bash
# DP=2 (one thread per rank) with the gradient all-reduce overlapped with backward
# (parallelism.overlap_grad_reduce = true, the default) against the all-reduce after backward,
# same model, batch and buckets (docs/distributed.md). Alternates the two, REPS times each, and
# prints the median total tokens/s of each over the logged windows after the first.
# Usage: bench/dp_overlap.sh path/to/agpt [REPS] [extra train overrides...]
set -eu
agpt=$(realpath "$1")
reps=${2:-3}
shift $(($# >= 2 ? 2 : 1))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(train --job.dump_folder "$work" --model.flavor small --training.seq_len 128
    --training.global_batch_size 16 --training.local_batch_size 8 --training.threads 1
    --training.steps 40 --metrics.log_freq 10 --validation.enable false
    --sample.max_new_tokens 0 "$@")
for r in $(seq 1 "$reps"); do
    for overlap in true false; do
        mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 "$agpt" "${common[@]}" \
            --job.name "${overlap}_$r" --parallelism.overlap_grad_reduce "$overlap" >/dev/null
    done
done
/usr/bin/python3 - "$work" "$reps" <<'PY'
import json, statistics, sys
work, reps = sys.argv[1], int(sys.argv[2])
def median_total(run):
    rows = [json.loads(l) for l in open(f"{work}/{run}/metrics.jsonl") if '"tok_per_s"' in l]
    return statistics.median(r["tok_per_s_total"] for r in rows if r["step"] > 1)
on = [median_total(f"true_{r}") for r in range(1, reps + 1)]
off = [median_total(f"false_{r}") for r in range(1, reps + 1)]
m_on, m_off = statistics.median(on), statistics.median(off)
print(f"overlapped with backward: median {m_on:.0f} tok/s  (runs: {', '.join(f'{v:.0f}' for v in on)})")
print(f"after backward:           median {m_off:.0f} tok/s  (runs: {', '.join(f'{v:.0f}' for v in off)})")
print(f"ratio overlapped / after: {m_on / m_off:.3f}")
PY
