#!/usr/bin/env bash
# DP=2 with one thread per rank against one process with two threads, same model and global
# batch (docs/distributed.md). Alternates the two, REPS times each, and prints the median total
# tokens/s of each over the logged windows after the first.
# Usage: bench/dp_throughput.sh path/to/agpt [REPS] [extra train overrides...]
set -eu
agpt=$(realpath "$1")
reps=${2:-3}
shift $(($# >= 2 ? 2 : 1))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(train --job.dump_folder "$work" --model.flavor small --training.seq_len 128
    --training.global_batch_size 16 --training.steps 40 --metrics.log_freq 10
    --validation.enable false --sample.max_new_tokens 0 "$@")
for r in $(seq 1 "$reps"); do
    "$agpt" "${common[@]}" --job.name "one_$r" --training.local_batch_size 16 \
        --training.threads 2 >/dev/null
    mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 "$agpt" "${common[@]}" \
        --job.name "dp2_$r" --training.local_batch_size 8 --training.threads 1 >/dev/null
done
/usr/bin/python3 - "$work" "$reps" <<'PY'
import json, statistics, sys
work, reps = sys.argv[1], int(sys.argv[2])
def total(run):
    rows = [json.loads(l) for l in open(f"{work}/{run}/metrics.jsonl") if '"tok_per_s"' in l]
    return [r.get("tok_per_s_total", r["tok_per_s"]) for r in rows if r["step"] > 1]
one = [statistics.median(total(f"one_{r}")) for r in range(1, reps + 1)]
dp2 = [statistics.median(total(f"dp2_{r}")) for r in range(1, reps + 1)]
m1, m2 = statistics.median(one), statistics.median(dp2)
print(f"1 process x 2 threads: median {m1:.0f} tok/s  (runs: {', '.join(f'{v:.0f}' for v in one)})")
print(f"DP=2 x 1 thread:       median {m2:.0f} tok/s  (runs: {', '.join(f'{v:.0f}' for v in dp2)})")
print(f"ratio DP=2 / 1 process: {m2 / m1:.3f}")
PY
