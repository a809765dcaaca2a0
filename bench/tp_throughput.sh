#!/usr/bin/env bash
# TP=2 (two ranks, one thread each) against one process with one thread, and against one process
# with two threads, same model and batch (docs/distributed.md). Alternates the three, REPS times
# each, and prints the median tokens/s of each over the logged windows after the first, and
# rank 0's peak RSS.
# Usage: bench/tp_throughput.sh path/to/agpt [REPS] [extra train overrides...]
set -eu
agpt=$(realpath "$1")
reps=${2:-3}
shift $(($# >= 2 ? 2 : 1))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(train --job.dump_folder "$work" --model.flavor small --training.seq_len 128
    --training.local_batch_size 8 --training.steps 40 --metrics.log_freq 10
    --validation.enable false --sample.max_new_tokens 0 "$@")
for r in $(seq 1 "$reps"); do
    "$agpt" "${common[@]}" --job.name "one1_$r" --training.threads 1 >"$work/one1_$r.log"
    "$agpt" "${common[@]}" --job.name "one2_$r" --training.threads 2 >"$work/one2_$r.log"
    mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 "$agpt" "${common[@]}" \
        --job.name "tp2_$r" --training.threads 1 --parallelism.tensor_parallel_degree 2 \
        >"$work/tp2_$r.log"
done
/usr/bin/python3 - "$work" "$reps" <<'PY'
import json, re, statistics, sys
work, reps = sys.argv[1], int(sys.argv[2])
def tok(run):
    rows = [json.loads(l) for l in open(f"{work}/{run}/metrics.jsonl") if '"tok_per_s"' in l]
    return statistics.median(r.get("tok_per_s_total", r["tok_per_s"]) for r in rows if r["step"] > 1)
def rss(run):
    return float(re.search(r"peak RSS ([0-9.]+) GiB", open(f"{work}/{run}.log").read()).group(1))
for name, label in (("one1", "1 process x 1 thread "), ("one2", "1 process x 2 threads"),
                    ("tp2", "TP=2 x 1 thread      ")):
    runs = [tok(f"{name}_{r}") for r in range(1, reps + 1)]
    print(f"{label}: median {statistics.median(runs):.0f} tok/s (runs: "
          f"{', '.join(f'{v:.0f}' for v in runs)}), rank 0 peak RSS {rss(f'{name}_1'):.2f} GiB")
PY
