#!/usr/bin/env bash
# Expert parallelism EP=2 against data parallelism DP=2 on a MoE flavor, one thread per rank,
# same global batch (docs/distributed.md). Alternates the two, REPS times each, and prints the
# median total tokens/s of each over the logged windows after the first.
# Usage: bench/ep_throughput.sh path/to/agpt [REPS] [extra train overrides...]
set -eu
agpt=$(realpath "$1")
reps=${2:-3}
shift $(($# >= 2 ? 2 : 1))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(train --job.dump_folder "$work" --model.flavor moe_debug --training.seq_len 128
    --training.local_batch_size 8 --training.global_batch_size 16 --training.steps 40
    --training.threads 1 --metrics.log_freq 10 --validation.enable false
    --sample.max_new_tokens 0 "$@")
for r in $(seq 1 "$reps"); do
    for mode in dp2 ep2; do
        degree=$([[ $mode == ep2 ]] && echo 2 || echo 1)
        mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 "$agpt" "${common[@]}" \
            --job.name "${mode}_$r" --parallelism.expert_parallel_degree "$degree" >/dev/null
    done
done
/usr/bin/python3 - "$work" "$reps" <<'PY'
import json, statistics, sys
work, reps = sys.argv[1], int(sys.argv[2])
def total(run):
    rows = [json.loads(l) for l in open(f"{work}/{run}/metrics.jsonl") if '"tok_per_s"' in l]
    return [r["tok_per_s_total"] for r in rows if r["step"] > 1]
med = {m: [statistics.median(total(f"{m}_{r}")) for r in range(1, reps + 1)] for m in ("dp2", "ep2")}
for m, label in (("dp2", "DP=2 x 1 thread"), ("ep2", "EP=2 x 1 thread")):
    print(f"{label}: median {statistics.median(med[m]):.0f} tok/s  (runs: {', '.join(f'{v:.0f}' for v in med[m])})")
print(f"ratio EP=2 / DP=2: {statistics.median(med['ep2']) / statistics.median(med['dp2']):.3f}")
PY
