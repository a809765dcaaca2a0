#!/usr/bin/env bash
# `agpt lr-find` end to end on configs/debugmodel.toml (shortened): the files exist and parse,
# a re-run reuses the finished sweep, bad flags are refused before anything is written.
# Usage: lr_find_cli_test.sh path/to/agpt path/to/configs/debugmodel.toml
set -u
agpt="$1"
config="$2"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
check() {  # check NAME COMMAND...: the command must succeed
    local name="$1"
    shift
    if ! "$@"; then
        echo "FAIL $name"
        failed=$((failed + 1))
    fi
}

args=(lr-find --config "$config" --steps 30 --lr-min 1e-5 --lr-max 1 --save-every 10
    --job.dump_folder "$work" --job.name lf --training.local_batch_size 2
    --training.seq_len 64 --training.threads 2)
"$agpt" "${args[@]}" >"$work/out.txt" 2>&1
rc=$?
check exit_status test "$rc" -eq 0
run="$work/lf"
for f in lr_find_AdamW.csv lr_find_AdamW.json lr_find.png lr_find.log lr_find_call.json; do
    check "exists_$f" test -s "$run/$f"
done
check png_magic bash -c "head -c 8 '$run/lr_find.png' | od -An -tx1 | grep -q '89 50 4e 47 0d 0a 1a 0a'"
check json_parses python3 -c "
import json, math, sys
j = json.load(open('$run/lr_find_AdamW.json'))
pts = j['sweep']['points']
assert j['optimizer'] == 'AdamW' and j['steps'] == 30, j
assert 3 <= len(pts) <= 30, len(pts)
assert abs(pts[0]['lr'] - 1e-5) < 1e-18, pts[0]
assert all(abs(p['optimizer_lr'] - p['lr']) <= 1e-9 * p['lr'] for p in pts)
assert all(math.isfinite(p['loss']) for p in pts)
s = j['suggestions']
assert s['steepest'] is not None and 1e-5 <= s['steepest'] <= 1, s
assert s['min_div10'] is not None, s
"
check csv_parses python3 -c "
import csv
rows = list(csv.DictReader(open('$run/lr_find_AdamW.csv')))
assert len(rows) >= 3 and float(rows[0]['lr']) == 1e-5, rows[:1]
assert all(float(r['smoothed_loss']) > 0 for r in rows)
"
check progress_shown grep -q "AdamW step .*/30 | lr" "$work/out.txt"
check suggestions_printed grep -q "steepest .* min/10 .* blow-up/10" "$work/out.txt"

# The same command again: the finished sweep is read back, not re-run.
"$agpt" "${args[@]}" >"$work/again.txt" 2>&1
check rerun_status test $? -eq 0
check rerun_reuses grep -q "finished earlier" "$work/again.txt"

# Bad input: one error line naming the flag, non-zero exit, no folder.
err=$("$agpt" lr-find --config "$config" --lr-min 0 --job.dump_folder "$work" --job.name bad 2>&1)
check bad_lr_min_status test $? -ne 0
check bad_lr_min_message grep -q -- "--lr-min" <<<"$err"
check bad_lr_min_no_folder test ! -e "$work/bad"
err=$("$agpt" lr-find --config "$config" --optimizer.name AdamW,NoSuch --job.dump_folder "$work" --job.name bad 2>&1)
check bad_optimizer_status test $? -ne 0
check bad_optimizer_message grep -q "NoSuch" <<<"$err"
check bad_optimizer_no_folder test ! -e "$work/bad"

# SIGKILL mid-sweep, then the same command again: the curve equals an uninterrupted run's.
tiny=(lr-find --steps 60 --lr-min 1e-5 --lr-max 1 --save-every 5 --job.dump_folder "$work"
    --model.flavor tiny --training.local_batch_size 4 --training.seq_len 32 --training.threads 2)
"$agpt" "${tiny[@]}" --job.name whole >/dev/null 2>&1
check whole_status test $? -eq 0
"$agpt" "${tiny[@]}" --job.name killed >"$work/killed.txt" 2>&1 &
pid=$!
for _ in $(seq 2400); do  # up to 2 min on a busy machine
    compgen -G "$work/killed/lr_find_state_AdamW/step-*/manifest.json" >/dev/null && break
    sleep 0.05
done
kill -KILL "$pid" 2>/dev/null
wait "$pid"
check killed_before_the_end test $? -eq 137
check killed_left_a_save compgen -G "$work/killed/lr_find_state_AdamW/step-*/manifest.json"
"$agpt" "${tiny[@]}" --job.name killed >"$work/resumed.txt" 2>&1
check resumed_status test $? -eq 0
check resumed_from_a_save grep -q "resumed at step" "$work/resumed.txt"
check same_curve_after_kill cmp "$work/whole/lr_find_AdamW.csv" "$work/killed/lr_find_AdamW.csv"

if [[ $failed -ne 0 ]]; then
    echo "--- output"
    cat "$work/out.txt"
    exit 1
fi
echo "lr-find CLI: all checks passed"
