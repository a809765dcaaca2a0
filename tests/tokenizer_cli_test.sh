#!/usr/bin/env bash
# End-to-end checks of `agpt tokenizer`: train, encode, decode, convert, bench; bad input gives one
# clear error line and a non-zero exit and never replaces an existing file.
# Usage: tokenizer_cli_test.sh path/to/agpt path/to/repo
set -u
agpt="$1"
repo="$2"
corpus="$repo/data/tinyshakespeare.txt"
hf="$repo/tests/data/hf_bytelevel_bpe_1024.json"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

ok() { passed=$((passed + 1)); }
bad() {
    failed=$((failed + 1))
    echo "FAIL $*"
}

# expect_fail NAME PATTERN ARGS...: non-zero exit, one stderr line, matching PATTERN (grep -E).
expect_fail() {
    local name="$1" pattern="$2"
    shift 2
    local err
    err=$("$agpt" "$@" 2>&1 </dev/null >/dev/null)
    local rc=$?
    if [[ $rc -ne 0 ]] && grep -qE -- "$pattern" <<<"$err" && [[ $(wc -l <<<"$err") -eq 1 ]]; then
        ok
    else
        bad "$name: rc=$rc stderr: $err"
    fi
}

# Train: progress on stderr, a tokenizer.json out.
if "$agpt" tokenizer train --vocab-size 2048 --out "$work/tok.json" "$corpus" 2>"$work/train.err" &&
    grep -qE "merging +100% 1790/1790 merges" "$work/train.err" &&
    grep -q "tokenizer: 2048 tokens" "$work/train.err" && [[ -s "$work/tok.json" ]]; then
    ok
else
    bad "train: $(cat "$work/train.err")"
fi

# An existing --out is kept unless --force.
sum_before=$(md5sum <"$work/tok.json")
expect_fail no_overwrite "tok.json: already exists; pass --force" \
    tokenizer train --vocab-size 300 --out "$work/tok.json" "$corpus"
if [[ $(md5sum <"$work/tok.json") == "$sum_before" ]]; then ok; else bad "no_overwrite changed the file"; fi
if "$agpt" tokenizer train --vocab-size 300 --pattern gpt2 --out "$work/tok.json" --force \
    "$corpus" 2>/dev/null && [[ $(md5sum <"$work/tok.json") != "$sum_before" ]]; then
    ok
else
    bad "train --force"
fi
"$agpt" tokenizer train --vocab-size 2048 --out "$work/tok.json" --force "$corpus" 2>/dev/null
if [[ ! -e "$work/tok.json.tmp" ]]; then ok; else bad "temporary file left behind"; fi

# Round trips through the CLI: a text file, random bytes (invalid UTF-8) with the HF tokenizer.
"$agpt" tokenizer encode --tokenizer "$work/tok.json" <"$corpus" >"$work/ids.txt" &&
    "$agpt" tokenizer decode --tokenizer "$work/tok.json" <"$work/ids.txt" >"$work/back.txt"
if cmp -s "$corpus" "$work/back.txt"; then ok; else bad "round trip of the corpus"; fi
head -c 20000 /dev/urandom >"$work/random.bin"
"$agpt" tokenizer encode --tokenizer "$hf" <"$work/random.bin" |
    "$agpt" tokenizer decode --tokenizer "$hf" >"$work/random.back"
if cmp -s "$work/random.bin" "$work/random.back"; then ok; else bad "round trip of random bytes"; fi

# The ids Hugging Face's tokenizers gives (tests/data/hf_bytelevel_bpe_1024_encodings.json).
ids=$(printf 'ROMEO:\nBut soft! what light through yonder window breaks?' |
    "$agpt" tokenizer encode --tokenizer "$hf")
want="860 27 200 447 367 71 85 2 436 361 350 285 83 769 284 515 274 265 503 299 771 570 84 32"
if [[ "$ids" == "$want" ]]; then ok; else bad "hf ids: $ids"; fi
# 460,035 tokens for the whole corpus, as tokenizers counts them.
count=$("$agpt" tokenizer encode --tokenizer "$hf" <"$corpus" | wc -w)
if [[ $count -eq 460035 ]]; then ok; else bad "corpus token count $count"; fi

# Special tokens: text unless --specials; decode --skip-specials drops them.
plain=$(printf '<|bos|>hi' | "$agpt" tokenizer encode --tokenizer "$hf")
special=$(printf '<|bos|>hi' | "$agpt" tokenizer encode --tokenizer "$hf" --specials)
if [[ "$special" == 0\ * && "$plain" != 0\ * ]]; then ok; else bad "specials: '$plain' / '$special'"; fi
text=$(echo "$special" | "$agpt" tokenizer decode --tokenizer "$hf" --skip-specials)
if [[ "$text" == "hi" ]]; then ok; else bad "skip-specials: '$text'"; fi

# --run DIR reads DIR/tokenizer.json.
mkdir -p "$work/run"
cp "$work/tok.json" "$work/run/tokenizer.json"
a=$(printf 'Good morrow' | "$agpt" tokenizer encode --run "$work/run")
b=$(printf 'Good morrow' | "$agpt" tokenizer encode --tokenizer "$work/tok.json")
if [[ -n "$a" && "$a" == "$b" ]]; then ok; else bad "--run: '$a' vs '$b'"; fi

# tiktoken ranks file: every byte, then "ab" (256) and "abc" (257); convert to tokenizer.json.
for b in $(seq 0 255); do
    printf "%s %d\n" "$(printf "\\$(printf '%03o' "$b")" | base64)" "$b"
done >"$work/tiny.tiktoken"
printf '%s 256\n%s 257\n' "$(printf ab | base64)" "$(printf abc | base64)" >>"$work/tiny.tiktoken"
ids=$(printf 'abcab' | "$agpt" tokenizer encode --tokenizer "$work/tiny.tiktoken" \
    --special '<|endoftext|>')
if [[ "$ids" == "257 256" ]]; then ok; else bad "tiktoken ids: $ids"; fi
ids=$(printf 'abc<|endoftext|>' | "$agpt" tokenizer encode --tokenizer "$work/tiny.tiktoken" \
    --special '<|endoftext|>=300' --specials)
if [[ "$ids" == "257 300" ]]; then ok; else bad "tiktoken specials: $ids"; fi
if "$agpt" tokenizer convert --tokenizer "$work/tiny.tiktoken" --out "$work/tiny.json" &&
    [[ $(printf 'abcab xabc' | "$agpt" tokenizer encode --tokenizer "$work/tiny.json") == \
        $(printf 'abcab xabc' | "$agpt" tokenizer encode --tokenizer "$work/tiny.tiktoken") ]]; then
    ok
else
    bad "convert"
fi

# bench prints throughput.
if "$agpt" tokenizer bench --tokenizer "$hf" --repeat 1 "$corpus" | grep -qE "encode [0-9.]+ MB/s"; then
    ok
else
    bad "bench"
fi

# Bad input: one clear line naming the problem.
printf '{"model": ' >"$work/broken.json"
expect_fail not_json "broken.json: not valid JSON" tokenizer encode --tokenizer "$work/broken.json"
printf '{"model": {"type": "Unigram", "vocab": []}}' >"$work/unigram.json"
expect_fail unsupported_model "unigram.json: model type 'Unigram' is not supported" \
    tokenizer encode --tokenizer "$work/unigram.json"
printf 'not/base64! 0\n' >"$work/bad.tiktoken"
expect_fail bad_base64 "bad.tiktoken:1: bad base64" tokenizer encode --tokenizer "$work/bad.tiktoken"
expect_fail missing_tokenizer "nosuch.json: cannot open" \
    tokenizer encode --tokenizer "$work/nosuch.json"
expect_fail no_run_tokenizer "no tokenizer.json in this run folder" \
    tokenizer encode --run "$work/nosuch_run"
expect_fail both_sources "exactly one of --tokenizer and --run" \
    tokenizer decode --tokenizer "$hf" --run "$work/run"
err=$(echo "12 abc" | "$agpt" tokenizer decode --tokenizer "$hf" 2>&1 >/dev/null)
if [[ "$err" == "agpt: error: stdin: 'abc' is not a token id" ]]; then ok; else bad "decode word: $err"; fi
err=$(echo "99999" | "$agpt" tokenizer decode --tokenizer "$hf" 2>&1 >/dev/null)
if grep -q "token id 99999 is outside the vocabulary" <<<"$err"; then ok; else bad "decode id: $err"; fi
expect_fail missing_corpus "nosuch.txt: cannot read" \
    tokenizer train --vocab-size 300 --out "$work/x.json" "$work/nosuch.txt"
expect_fail small_vocab "vocab_size 100 is too small" \
    tokenizer train --vocab-size 100 --out "$work/x.json" "$corpus"
expect_fail bad_pattern "pattern 'gpt5' is unknown" \
    tokenizer train --pattern gpt5 --out "$work/x.json" "$corpus"
if [[ ! -e "$work/x.json" ]]; then ok; else bad "failed train left x.json"; fi

echo "tokenizer_cli: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
