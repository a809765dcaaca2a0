#!/usr/bin/env bash
# End-to-end checks of `agpt export`, `agpt import` and `agpt generate` on tiny runs.
# Usage: generate_cli_test.sh path/to/agpt   (run from the repository root)
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

# expect_fail NAME PATTERN ARGS...: non-zero exit and one stderr line matching PATTERN.
# (Flag-parsing errors come from CLI11, which adds a "Run with --help" line: expect_usage.)
max_lines=1
expect_fail() {
    local name="$1" pattern="$2"
    shift 2
    local err rc
    err=$("$agpt" "$@" 2>&1 >/dev/null)
    rc=$?
    if [[ $rc -ne 0 ]] && grep -qE -- "$pattern" <<<"$err" &&
        [[ $(wc -l <<<"$err") -le $max_lines ]]; then
        ok
    else
        bad "$name: rc=$rc stderr: $err"
    fi
}
expect_usage() {
    max_lines=2
    expect_fail "$@"
    max_lines=1
}

train_tiny() {  # NAME [overrides...]
    local name="$1"
    shift
    "$agpt" train --job.dump_folder "$work/runs" --job.name "$name" --model.flavor tiny \
        --training.steps 2 --training.seq_len 32 --training.local_batch_size 2 \
        --checkpoint.enable true --checkpoint.interval 1 --validation.enable false \
        --sample.max_new_tokens 0 --training.threads 2 "$@" >"$work/train_$name.txt" 2>&1
}

if train_tiny r; then ok; else bad "train: $(tail -3 "$work/train_r.txt")"; fi
run="$work/runs/r"

# export: the folder, then refusals that leave good data alone
if "$agpt" export --run "$run" --format hf --out "$work/hf" >/dev/null &&
    [[ -f "$work/hf/config.json" && -f "$work/hf/model.safetensors" && ! -e "$work/hf.tmp" ]] &&
    grep -q '"model_type": "llama"' "$work/hf/config.json"; then ok; else bad export; fi
cp "$work/hf/model.safetensors" "$work/before.safetensors"
expect_fail export_exists "already exists" export --run "$run" --format hf --out "$work/hf"
if cmp -s "$work/hf/model.safetensors" "$work/before.safetensors"; then ok; else bad export_overwrote; fi
expect_fail export_step "step 9" export --run "$run" --step 9 --format hf --out "$work/hf9"
expect_usage export_format "gguf" export --run "$run" --format gguf --out "$work/hfg"
expect_fail export_no_run "no such run folder" export --run "$work/nosuch" --format hf --out "$work/x"
if "$agpt" export --run "$run" --step 1 --format hf --out "$work/hf1" | grep -q "step 1"; then ok; else bad export_step1; fi

# generate: cached and uncached agree, greedy and sampled, across context refills
gen() { "$agpt" generate --run "$run" --threads 2 "$@"; }
same_ids() {  # NAME ARGS...: the ids line is identical with and without the cache
    local name="$1"
    shift
    local a b
    a=$(gen "$@" --output ids | head -1)
    b=$(gen "$@" --output ids --no-cache | head -1)
    if [[ -n "$a" && "$a" == "$b" ]]; then ok; else bad "$name: cached '$a' vs uncached '$b'"; fi
}
same_ids greedy --prompt "To be" --max-new-tokens 20 --temperature 0
same_ids sampled --prompt "To be" --max-new-tokens 20 --temperature 0.9 --top-k 20 --seed 3
same_ids refill --prompt-ids "256 84 111" --max-new-tokens 40 --temperature 1 --seed 5 --context 16

# --output ids --logprobs: the prompt ids then the new ids on one line, then 'id logprob' lines
out=$(gen --prompt-ids "256 72 105" --max-new-tokens 6 --temperature 0 --output ids --logprobs)
first=$(head -1 <<<"$out")
if [[ $(wc -l <<<"$out") -eq 7 && $(wc -w <<<"$first") -eq 9 && "$first" == "256 72 105 "* ]] &&
    tail -n +2 <<<"$out" | awk -v ids="$first" 'BEGIN { split(ids, t, " ") }
        { if ($1 != t[NR + 3] || $2 > 0 || NF != 2) exit 1 }'; then ok; else bad "logprobs: $out"; fi
# The cached and uncached log-probabilities agree within 1e-4.
nc=$(gen --prompt-ids "256 72 105" --max-new-tokens 6 --temperature 0 --output ids --logprobs --no-cache)
if paste <(tail -n +2 <<<"$out") <(tail -n +2 <<<"$nc") |
    awk '{ d = $2 - $4; if (d < 0) d = -d; if ($1 != $3 || d > 1e-4) exit 1 }'; then ok; else bad "logprobs_nocache"; fi
# Same seed, same text; text output starts with the prompt.
a=$(gen --prompt "Hi" --max-new-tokens 10 --seed 7)
b=$(gen --prompt "Hi" --max-new-tokens 10 --seed 7)
if [[ "$a" == "$b" && "$a" == Hi* ]]; then ok; else bad "text: '$a' vs '$b'"; fi
if gen --prompt "" --max-new-tokens 3 >/dev/null; then ok; else bad empty_prompt_uses_bos; fi
expect_usage prompt_both "excludes" generate --run "$run" --prompt a --prompt-ids "1"
expect_fail prompt_ids_bad "not a token id" generate --run "$run" --prompt-ids "1 x"
expect_fail prompt_ids_vocab "outside the vocabulary" generate --run "$run" --prompt-ids "999"
expect_fail context_too_long "max_seq_len" generate --run "$run" --prompt a --context 100000

# import: HF folder -> checkpoint step folder -> a new run starts from it
if "$agpt" import --hf "$work/hf" --out "$work/imp/step-0" >"$work/imp.txt" &&
    grep -q "model.flavor tiny" "$work/imp.txt" && [[ -f "$work/imp/step-0/manifest.json" ]]; then
    ok
else
    bad "import: $(cat "$work/imp.txt")"
fi
if train_tiny from_import --checkpoint.initial_load_path "$work/imp/step-0" --training.steps 1 &&
    grep -q "initial weights from" "$work/train_from_import.txt"; then ok; else bad train_from_import; fi
if train_tiny from_hf --checkpoint.initial_load_path "$work/hf" --training.steps 1; then ok; else bad train_from_hf; fi
# Round trip: exporting the imported weights gives the same tensors byte for byte (the step
# folder's model.safetensors is the export's, header included).
if cmp -s "$work/imp/step-0/model.safetensors" "$work/hf/model.safetensors"; then ok; else bad roundtrip_bytes; fi
expect_fail import_exists "already exists" import --hf "$work/hf" --out "$work/imp/step-0"
mkdir -p "$work/badhf"
cp "$work/hf/model.safetensors" "$work/badhf/"
sed 's/"llama"/"mistral"/' "$work/hf/config.json" >"$work/badhf/config.json"
expect_fail import_model_type "config.json.*model_type" import --hf "$work/badhf" --out "$work/imp2"
grep -v '"hidden_size"' "$work/hf/config.json" >"$work/badhf/config.json"
expect_fail import_missing_key "config.json.*hidden_size" import --hf "$work/badhf" --out "$work/imp3"
[[ ! -e "$work/imp2" && ! -e "$work/imp3" ]] && ok || bad import_left_output

# A BPE run exports its tokenizer.json and generates text through it.
if train_tiny bpe --model.tokenizer tests/data/hf_bytelevel_bpe_1024.json &&
    "$agpt" export --run "$work/runs/bpe" --format hf --out "$work/hf_bpe" >/dev/null &&
    [[ -f "$work/hf_bpe/tokenizer.json" ]] &&
    "$agpt" generate --run "$work/runs/bpe" --prompt "The" --max-new-tokens 5 --threads 2 >/dev/null; then
    ok
else
    bad "bpe: $(tail -3 "$work/train_bpe.txt")"
fi

echo "generate_cli: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
