#!/usr/bin/env bash
# `agpt compete` end to end: two entries that differ only in their names, two seeds each, a few
# steps of the tiny model. They must tie (same final val_loss, marked ≈), a re-run must skip every
# finished run, --emit must write one script per entry, and a bad file must fail before any run.
# Usage: compete_cli_test.sh path/to/agpt   (run from the repository root)
set -u
agpt="$1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); }
bad() {
    failed=$((failed + 1))
    echo "FAIL $*"
}
check() {  # NAME COMMAND...: the command must succeed
    local name="$1"
    shift
    if "$@"; then ok; else bad "$name"; fi
}

cat >"$work/twins.toml" <<'TOML'
description = "Two identical entries: they must tie."
seeds = 2
[base]
"model.flavor" = "tiny"
"training.local_batch_size" = 4
"training.seq_len" = 32
"training.steps" = 8
"training.threads" = 1
"validation.freq" = 4
"validation.steps" = 2
"metrics.log_freq" = 2
"sample.max_new_tokens" = 0
"lr_scheduler.warmup_steps" = 2

[[entry]]
name = "adamw"
"optimizer.name" = "AdamW"

[[entry]]
name = "adamw_twin"
"optimizer.name" = "AdamW"
TOML

out="$work/runs"
report="$work/report"
log=$("$agpt" compete "$work/twins.toml" --out "$out" --report "$report" 2>&1)
rc=$?
check "first run exits 0 (rc=$rc): $log" test $rc -eq 0
check "four runs trained" test "$(grep -c 'val_loss .* in ' <<<"$log")" -eq 4
# Progress while a run trains: its validation lines (steps 4 and 8 of each of the four runs).
check "validation progress shown" test "$(grep -cE '^\[[1-4]/4\] adamw(_twin)? seed [12]: step +[48]/8 \| val_loss' <<<"$log")" -eq 8
for e in adamw adamw_twin; do
    for s in 1 2; do
        check "$e seed$s has metrics" test -s "$out/$e/seed$s/metrics.jsonl"
    done
done
# Same config and seed in fresh processes: bit-identical results.
check "twins' metrics are identical" cmp -s <(grep val_loss "$out/adamw/seed1/metrics.jsonl") \
    <(grep val_loss "$out/adamw_twin/seed1/metrics.jsonl")
check "seeds differ" bash -c "! cmp -s '$out/adamw/seed1/metrics.jsonl' '$out/adamw/seed2/metrics.jsonl'"
readme="$report/README.md"
check "README written" test -s "$readme"
check "leader row" grep -qE '^\| 1 \| adamw \| [0-9.]+ ± [0-9.]+ \| 2/2 \| 0 \| — \| leader \|' "$readme"
check "twin ties with p = 1" grep -qE '^\| 2 \| adamw_twin \| [0-9.]+ ± [0-9.]+ \| 2/2 \| \+0\.0000 \| 1 \| ≈ \|' "$readme"
check "test stated" grep -q "Welch's two-sided t-test at 95% confidence" "$readme"
check "loss plot" test -s "$report/loss_curves.png"
check "png signature" bash -c "head -c 8 '$report/loss_curves.png' | od -An -c | grep -q 'P   N   G'"

# Re-running skips the finished runs and trains nothing.
log=$("$agpt" compete "$work/twins.toml" --out "$out" --report "$report" 2>&1)
check "re-run exits 0" test $? -eq 0
check "re-run skips all four" test "$(grep -c 'finished earlier, skipped' <<<"$log")" -eq 4
check "re-run trains nothing" test "$(grep -c 'training (' <<<"$log")" -eq 0

# --emit writes one script per entry, and runs nothing.
"$agpt" compete "$work/twins.toml" --out "$work/cluster" --emit slurm >/dev/null
check "emit exits 0" test $? -eq 0
check "two slurm scripts" test "$(ls "$work/cluster" | grep -c '\.slurm$')" -eq 2
check "script runs both seeds" test "$(grep -c ' train ' "$work/cluster/adamw_twin.slurm")" -eq 2
check "nothing trained by --emit" test ! -e "$work/cluster/adamw/seed1"

# A bad key in one entry: one error line naming the file, entry and key; nothing runs.
sed 's/"optimizer.name" = "AdamW"$/"optimizer.nme" = "AdamW"/' "$work/twins.toml" >"$work/bad.toml"
err=$("$agpt" compete "$work/bad.toml" --out "$work/bad_runs" 2>&1 >/dev/null)
rc=$?
check "bad file fails (rc=$rc)" test $rc -ne 0
check "one error line: $err" test "$(wc -l <<<"$err")" -eq 1
check "error names file, entry and key: $err" grep -q "bad.toml: entry 'adamw': --optimizer.nme" <<<"$err"
check "nothing ran for the bad file" test ! -e "$work/bad_runs"

echo "compete_cli: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
