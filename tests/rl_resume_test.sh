#!/usr/bin/env bash
# Kill-and-resume for `agpt rl`: a checkpointed GRPO run stopped by SIGTERM (saves, exits 75) or
# killed by SIGKILL, then restarted with the same command, must end with weights and optimizer
# state byte-identical to an uninterrupted run's.
# Usage: rl_resume_test.sh path/to/agpt
set -u
agpt="$1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0

"$agpt" sft --task sum_of_digits --steps 30 --job.dump_folder "$work" --job.name sft \
    --model.flavor tiny --task.difficulty 2 --training.local_batch_size 16 \
    --training.threads 1 --rl.eval_n 0 --metrics.log_freq 10 >"$work/sft.log" 2>&1 ||
    { echo "FAIL sft: $(tail -3 "$work/sft.log")"; exit 1; }

run() {  # run NAME: exec, so that kill reaches agpt itself
    exec "$agpt" rl --task sum_of_digits --init "$work/sft" --job.dump_folder "$work" \
        --job.name "$1" --task.difficulty 2 --training.steps 30 --training.local_batch_size 8 \
        --training.threads 1 --rl.prompts_per_step 4 --rl.group_size 4 --rl.max_new_tokens 4 \
        --rl.eval_n 0 --optimizer.lr 1e-3 --metrics.log_freq 1 --checkpoint.enable true \
        --checkpoint.interval 1
}

wait_for() {  # wait_for PATH: up to 120 s
    for _ in $(seq 1200); do [[ -e "$1" ]] && return 0; sleep 0.1; done
    return 1
}

same_as_reference() {  # same_as_reference NAME
    for f in model.safetensors optimizer.safetensors; do
        cmp -s "$work/reference/checkpoints/step-30/$f" "$work/$1/checkpoints/step-30/$f" ||
            { echo "FAIL $1: $f differs from the uninterrupted run's"; return 1; }
    done
}

(run reference) >"$work/reference.log" 2>&1 || { echo "FAIL reference: $(tail -3 "$work/reference.log")"; exit 1; }

(run term) >"$work/term.log" 2>&1 &
pid=$!
wait_for "$work/term/checkpoints/step-3/manifest.json" || { echo "FAIL term: no step-3"; failed=1; }
kill -TERM "$pid"
wait "$pid"
status=$?
[[ $status -eq 75 ]] || { echo "FAIL term: exit status $status, expected 75"; failed=1; }
(run term) >>"$work/term.log" 2>&1 || { echo "FAIL term resume: $(tail -3 "$work/term.log")"; failed=1; }
grep -q "resumed from" "$work/term.log" || { echo "FAIL term: did not resume"; failed=1; }
same_as_reference term || failed=1

(run kill) >"$work/kill.log" 2>&1 &
pid=$!
wait_for "$work/kill/checkpoints/step-4/manifest.json" || { echo "FAIL kill: no step-4"; failed=1; }
kill -KILL "$pid"
wait "$pid" 2>/dev/null
grep -q "step   30/30" "$work/kill.log" && { echo "FAIL kill: the run ended before the kill"; failed=1; }
(run kill) >>"$work/kill.log" 2>&1 || { echo "FAIL kill resume: $(tail -3 "$work/kill.log")"; failed=1; }
grep -q "resumed from" "$work/kill.log" || { echo "FAIL kill: did not resume"; failed=1; }
same_as_reference kill || failed=1

python3 - "$work" <<'PY' || failed=1
import json, sys
def rows(name):
    return [json.loads(l) for l in open(f"{sys.argv[1]}/{name}/metrics.jsonl")]
ref = [(r["step"], r["reward_mean"], r["loss"]) for r in rows("reference") if "reward_mean" in r]
for name in ("term", "kill"):
    got = [(r["step"], r["reward_mean"], r["loss"]) for r in rows(name) if "reward_mean" in r]
    if got != ref:
        print(f"FAIL {name}: metrics differ from the uninterrupted run's\n{got}\n{ref}")
        sys.exit(1)
PY
[[ $failed -eq 0 ]] && echo "rl resume: all checks passed"
exit $failed
