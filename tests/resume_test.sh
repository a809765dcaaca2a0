#!/usr/bin/env bash
# Kill-and-resume: a checkpointed run killed with SIGKILL at arbitrary moments (during steps and
# during saves) and restarted with the same command must log exactly the losses of an
# uninterrupted run. SIGTERM must save, exit with status 75 and resume exactly too.
# Usage: resume_test.sh path/to/agpt
set -u
agpt="$1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# run NAME EXTRA_ARGS...: always called in a subshell, "(run ...)" or "run ... &", so that exec
# makes the subshell the agpt process itself and kill reaches it.
run() {
    local name="$1"
    shift
    exec "$agpt" train --job.dump_folder "$work" --job.name "$name" --model.flavor small \
        --training.local_batch_size 8 --training.seq_len 128 --training.steps 60 \
        --training.threads 2 --metrics.log_freq 1 --validation.freq 20 --validation.steps 2 \
        --sample.max_new_tokens 0 --checkpoint.enable true --checkpoint.interval 3 \
        --checkpoint.keep_latest_k 2 "$@"
}

losses() {  # the (step, loss) and (step, val_loss) records of a run, one per line
    /usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    print(d["step"], repr(d.get("loss")), repr(d.get("val_loss")))
' "$work/$1/metrics.jsonl"
}

check() {  # check NAME CONDITION_EXIT_STATUS MESSAGE
    if [[ $2 -eq 0 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL $1: $3"; fi
}

(run reference) >"$work/reference.log" 2>&1
check reference_run $? "$(tail -3 "$work/reference.log")"
losses reference >"$work/reference.txt"

# wait_for PATTERN COUNT PID: until the killed run's log has more than COUNT lines matching
# PATTERN (or the process ended); robust to a slow, loaded machine.
wait_for() {
    for _ in $(seq 1 2400); do
        [[ $(grep -c "$1" "$3") -gt $2 ]] && return 0
        kill -0 "$4" 2>/dev/null || return 0
        sleep 0.05
    done
}

# SIGKILL after each attempt has written a new checkpoint, at staggered moments: during the
# following steps and during the following saves.
kills=0
touch "$work/killed.log"
for delay in 0.05 0.2 0.1 0.3 0.15 0.25 0.0 0.12 0.22 0.08; do
    before=$(grep -c "^checkpoint" "$work/killed.log")
    run killed >>"$work/killed.log" 2>&1 &
    pid=$!
    wait_for "^checkpoint" "$before" "$work/killed.log" "$pid"
    sleep "$delay"
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid"
        kills=$((kills + 1))
    fi
    wait "$pid" 2>/dev/null
    grep -q "^done in" "$work/killed.log" && break
done
until grep -q "^done in" "$work/killed.log"; do
    (run killed) >>"$work/killed.log" 2>&1 || break
done
losses killed >"$work/killed.txt"
cmp -s "$work/reference.txt" "$work/killed.txt"
check sigkill_resume $? "losses differ after $kills kills: $(diff "$work/reference.txt" "$work/killed.txt" | head -5)"
grep -q "resumed from" "$work/killed.log" && [[ $kills -ge 3 ]]
check sigkill_resumed_at_all $? "too few kills or no resume ($kills kills)"
echo "resume: $kills kills, $(grep -c "resumed from" "$work/killed.log") resumes"
remaining=$(ls "$work/killed/checkpoints" | grep -c '^step-[0-9]*$')
[[ $remaining -eq 2 ]]
check keep_latest_k $? "$remaining checkpoints kept, expected 2: $(ls "$work/killed/checkpoints")"

# SIGTERM: save, exit 75, resume.
run termed >"$work/termed.log" 2>&1 &
pid=$!
wait_for "^step" 1 "$work/termed.log" "$pid"
kill -TERM "$pid"
wait "$pid"
rc=$?
[[ $rc -eq 75 ]] && grep -q "stopping at step" "$work/termed.log"
check sigterm_exit_75 $? "rc=$rc $(tail -2 "$work/termed.log")"
(run termed) >>"$work/termed.log" 2>&1
losses termed >"$work/termed.txt"
cmp -s "$work/reference.txt" "$work/termed.txt"
check sigterm_resume $? "losses differ: $(diff "$work/reference.txt" "$work/termed.txt" | head -5)"

# Walltime deadline already near: one step, a checkpoint, exit 75.
(run walltime --job.walltime_deadline "$(date +%s)") >"$work/walltime.log" 2>&1
rc=$?
[[ $rc -eq 75 ]] && grep -q "walltime deadline near" "$work/walltime.log" &&
    ls "$work/walltime/checkpoints" | grep -q '^step-1$'
check walltime_deadline $? "rc=$rc $(tail -2 "$work/walltime.log")"

# A corrupted newest checkpoint is refused by its checksum and the previous one is used (the
# run is extended by one step so that re-running it has work to do).
newest=$(ls "$work/reference/checkpoints" | sort -t- -k2 -n | tail -1)
printf 'X' | dd of="$work/reference/checkpoints/$newest/model.safetensors" bs=1 seek=100 conv=notrunc 2>/dev/null
(run reference --training.steps 61) >"$work/fallback.log" 2>&1
grep -q "checksum mismatch" "$work/fallback.log" && grep -q "resumed from" "$work/fallback.log"
check corrupt_fallback $? "$(head -5 "$work/fallback.log")"

echo "resume: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
