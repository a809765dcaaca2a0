"""Medians of repeated agpt train runs (bench/lib.sh's summarize): WORK REPS NAME=LABEL ..."""
import json
import os
import re
import statistics
import sys

work, reps, pairs = sys.argv[1], int(sys.argv[2]), [a.split("=", 1) for a in sys.argv[3:]]


def run_tok_per_s(run):
    rows = [json.loads(l) for l in open(f"{work}/{run}/metrics.jsonl") if '"tok_per_s"' in l]
    return statistics.median(r.get("tok_per_s_total", r["tok_per_s"]) for r in rows if r["step"] > 1)


medians = []
for name, label in pairs:
    runs = [run_tok_per_s(f"{name}_{r}") for r in range(1, reps + 1)]
    medians.append(statistics.median(runs))
    line = f"{label}: median {medians[-1]:.0f} tok/s (runs: {', '.join(f'{v:.0f}' for v in runs)})"
    log = f"{work}/{name}_1.log"
    if os.path.exists(log):
        line += f", rank 0 peak RSS {re.search(r'peak RSS ([0-9.]+) GiB', open(log).read()).group(1)} GiB"
    print(line)
print(f"ratio {pairs[-1][1]} / {pairs[0][1]}: {medians[-1] / medians[0]:.3f}")
