#!/usr/bin/env bash
# End-to-end checks of the agpt program: bad input gives one clear error line and a non-zero
# exit; good input runs. Usage: cli_test.sh path/to/agpt
set -u
agpt="$1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# expect_fail NAME PATTERN ARGS...: non-zero exit and stderr matching PATTERN (grep -E).
expect_fail() {
    local name="$1" pattern="$2"
    shift 2
    local err
    err=$("$agpt" "$@" 2>&1 >/dev/null)
    local rc=$?
    if [[ $rc -ne 0 ]] && grep -qE -- "$pattern" <<<"$err"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $name: rc=$rc stderr: $err"
    fi
}

expect_fail unknown_key "unknown key 'training.stpes' \(did you mean 'training.steps'\?\)" \
    train --training.stpes 5
expect_fail wrong_type "training.steps.*expected an integer" train --training.steps ten
expect_fail batch_multiple "global_batch_size.*multiple" \
    train --training.local_batch_size 8 --training.global_batch_size 12
expect_fail unknown_flavor "flavor" train --model.flavor nosuch
expect_fail missing_config "nosuch.toml" train --config "$work/nosuch.toml"
printf '[training]\nsteps = 5\n[trainng]\nseed = 1\n' >"$work/bad.toml"
expect_fail unknown_section "bad.toml.*trainng" train --config "$work/bad.toml"
expect_fail missing_dataset "no_such_corpus.txt" \
    train --training.dataset "$work/no_such_corpus.txt" --job.dump_folder "$work/runs"
expect_fail bench_steps "steps" bench --steps 0
# training.device = cuda with no device visible (hidden where there is one), or in a build
# without the CUDA backend: one error, before the run folder exists.
CUDA_VISIBLE_DEVICES="" expect_fail cuda_no_device \
    "^agpt: error: training.device = cuda: (no CUDA device is visible|this build has no CUDA backend)" \
    train --training.device cuda --job.dump_folder "$work/cuda_runs" --job.name c
CUDA_VISIBLE_DEVICES="" expect_fail bench_cuda \
    "^agpt: error: training.device = cuda: (no CUDA device is visible|this build has no CUDA backend)" \
    bench --training.device cuda --steps 1
if [[ -e $work/cuda_runs/c ]]; then
    failed=$((failed + 1))
    echo "FAIL cuda_no_device: the run folder was created"
fi

# One error line, not a cascade.
lines=$("$agpt" train --training.stpes 5 2>&1 >/dev/null | wc -l)
if [[ $lines -eq 1 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL one_line: $lines lines"; fi

# --print-config reflects overrides and is accepted back as a config file.
"$agpt" train --print-config --training.steps 7 >"$work/resolved.toml"
if grep -q "^steps = 7" "$work/resolved.toml" &&
    "$agpt" train --config "$work/resolved.toml" --print-config >/dev/null; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL print_config"
fi

# A short real run: progress lines, run folder, and a second run under the same name refused.
if "$agpt" train --job.dump_folder "$work/runs" --job.name r --model.flavor tiny \
    --training.steps 3 --training.seq_len 32 --training.local_batch_size 2 --metrics.log_freq 1 \
    --validation.freq 3 --validation.steps 2 --sample.max_new_tokens 5 >"$work/out.txt" 2>&1 &&
    grep -q "step     3/3 | loss" "$work/out.txt" && grep -q "val_loss" "$work/out.txt" &&
    [[ -f "$work/runs/r/metrics.jsonl" && -f "$work/runs/r/config.toml" ]]; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL short_run:"
    cat "$work/out.txt"
fi
# The run's tokenizer drives the tokenizer tools: byte ids for the byte tokenizer.
ids=$(printf 'hi' | "$agpt" tokenizer encode --run "$work/runs/r" 2>&1)
if [[ "$ids" == "104 105" ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL encode_run: $ids"; fi
expect_fail rerun_refused "already exists" train --job.dump_folder "$work/runs" --job.name r \
    --model.flavor tiny --training.steps 3 --training.seq_len 32

# merge: two checkpoints of a short run averaged (WSM cosine) start a new run.
if "$agpt" train --job.dump_folder "$work/runs" --job.name m --model.flavor tiny \
    --training.steps 4 --training.seq_len 32 --training.local_batch_size 2 \
    --sample.max_new_tokens 0 --validation.enable false --checkpoint.enable true \
    --checkpoint.interval 2 >/dev/null 2>&1 &&
    "$agpt" merge --decay cosine --out "$work/merged" "$work/runs/m/checkpoints/step-2" \
        "$work/runs/m/checkpoints/step-4" &&
    [[ -f "$work/merged/manifest.json" ]] &&
    "$agpt" train --job.dump_folder "$work/runs" --job.name from_merged --model.flavor tiny \
        --training.steps 1 --training.seq_len 32 --training.local_batch_size 2 \
        --sample.max_new_tokens 0 --validation.enable false \
        --checkpoint.initial_load_path "$work/merged" >"$work/from_merged.log" 2>&1 &&
    grep -q "initial weights from" "$work/from_merged.log" &&
    grep -q "| val_loss off |" "$work/from_merged.log"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL merge"
fi
expect_fail merge_needs_weights "exactly one of --weights and --decay" merge --out "$work/m2" \
    "$work/runs/m/checkpoints/step-2"
expect_fail merge_bad_weight "not a number" merge --weights 0.5,x --out "$work/m3" \
    "$work/runs/m/checkpoints/step-2" "$work/runs/m/checkpoints/step-4"

# data prepare: JSON lines into shards, then a run on them; a second prepare into the same
# folder is refused.
for i in $(seq 1 200); do printf '{"text": "line %d of a small corpus for the prepare check"}\n' "$i"; done >"$work/docs.jsonl"
if "$agpt" data prepare "$work/docs.jsonl" --out "$work/shards" --val-fraction 0.1 --workers 2 >/dev/null 2>&1 &&
    [[ -f "$work/shards/manifest.json" && -f "$work/shards/train_000000.bin" && -f "$work/shards/val_000000.bin" ]] &&
    "$agpt" train --job.dump_folder "$work/runs" --job.name on_shards --model.flavor tiny \
        --training.dataset "$work/shards" --training.steps 2 --training.seq_len 32 \
        --training.local_batch_size 2 --validation.steps 1 --sample.max_new_tokens 0 >/dev/null 2>&1; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL prepare_and_train"
fi
expect_fail prepare_exists "already exists" data prepare "$work/docs.jsonl" --out "$work/shards"

# bench prints one JSON object with the documented keys.
json=$("$agpt" bench --model.flavor tiny --training.local_batch_size 2 --training.seq_len 32 --steps 2 --warmup 1)
if /usr/bin/python3 - "$json" <<'PY'; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL bench_json: $json"; fi
import json, sys
d = json.loads(sys.argv[1])
for k in ["flavor", "params", "batch", "seq", "tok_per_s", "tflops", "mfu", "step_time_s", "peak_rss_gib"]:
    assert k in d, k
assert d["flavor"] == "tiny" and d["batch"] == 2 and d["seq"] == 32 and d["tok_per_s"] > 0
PY

echo "cli: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
