#!/usr/bin/env bash
# End-to-end checks of `agpt data inspect` on the pyarrow-written files in tests/data/parquet and
# on broken copies of them: good files print their schema, row groups and rows; bad ones give one
# error line naming the file (and row group and column where one is involved) and exit non-zero.
# Then the dataset registry: `data prepare --dataset NAME --datasets FILE`, `data list`, errors.
# Usage: data_cli_test.sh path/to/agpt path/to/tests/data/parquet
set -u
agpt="$1"
data="$2"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# expect_out NAME PATTERN... -- ARGS...: exit 0 and stdout matching every PATTERN (grep -E).
expect_out() {
    local name="$1"
    shift
    local patterns=()
    while [[ "$1" != "--" ]]; do patterns+=("$1"); shift; done
    shift
    local out rc
    out=$("$agpt" "$@" 2>&1)
    rc=$?
    local ok=1
    [[ $rc -eq 0 ]] || ok=0
    for p in "${patterns[@]}"; do grep -qE -- "$p" <<<"$out" || { ok=0; echo "  missing: $p"; }; done
    if [[ $ok -eq 1 ]]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $name: rc=$rc output: $out"
    fi
}

# expect_fail NAME PATTERN ARGS...: non-zero exit and exactly one stderr line matching PATTERN.
expect_fail() {
    local name="$1" pattern="$2"
    shift 2
    local err rc
    err=$("$agpt" "$@" 2>&1 >/dev/null)
    rc=$?
    if [[ $rc -ne 0 ]] && grep -qE -- "$pattern" <<<"$err" && [[ $(wc -l <<<"$err") -eq 1 ]]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $name: rc=$rc stderr: $err"
    fi
}

snappy="$data/fineweb_like_snappy.parquet"
zstd="$data/fineweb_like_zstd_dict_v2.parquet"
nulls="$data/with_nulls.parquet"

expect_out snappy "rows: +3000 in 3 row groups" "parquet-cpp-arrow version 25.0.1" \
    "^  text +BYTE_ARRAY +STRING +optional" "^  token_count +INT64" \
    "row group 2: 1000 rows" "text +SNAPPY +PLAIN,RLE,RLE_DICTIONARY +1000" \
    "DICTIONARY_PAGE PLAIN x1, DATA_PAGE RLE_DICTIONARY x1" \
    "first 5 rows of column 'text'" '^  0  "First Citizen:\\nBefore we proceed' \
    -- data inspect "$snappy"
expect_out zstd "rows: +3000 in 5 row groups" "text +ZSTD" "DATA_PAGE_V2 RLE_DICTIONARY" \
    "row group 4: 200 rows" -- data inspect "$zstd"
expect_out row_groups_cut "\.\.\. 4 more row groups" -- data inspect "$zstd" --row-groups 1 --rows 0
expect_out nulls "first 4 rows of column 'text'" '^  0  "first"$' "^  1  null$" '^  2  ""$' \
    '^  3  "fourth doc"$' -- data inspect "$nulls" --rows 10
expect_out other_column "first 2 rows of column 'id'" -- data inspect "$zstd" --column id --rows 2
expect_out unicode "Ünïcödé — ‘quotes’ 🙂 中文" -- data inspect "$snappy" --rows 6

expect_fail missing_column "with_nulls.parquet: no column 'body' \(columns: text, n\)" \
    data inspect "$nulls" --column body
expect_fail int_column "with_nulls.parquet: column 'n' holds INT64" data inspect "$nulls" --column n
expect_fail missing_file "nosuch.parquet: cannot open" data inspect "$work/nosuch.parquet"
if "$agpt" data >/dev/null 2>&1; then failed=$((failed + 1)); echo "FAIL no_subcommand"; else passed=$((passed + 1)); fi

printf 'text\nnot parquet at all, just a csv\n' >"$work/notes.csv"
expect_fail not_parquet "notes.csv: not a parquet file" data inspect "$work/notes.csv"

size=$(stat -c %s "$snappy")
head -c $((size / 2)) "$snappy" >"$work/half.parquet"
expect_fail truncated "half.parquet: not a parquet file \(no PAR1 magic at the end" \
    data inspect "$work/half.parquet"

# The first page header of row group 0's 'text' chunk starts at byte 4: make its type unknown, so
# the dictionary page is skipped and the data page after it has no dictionary.
cp "$snappy" "$work/bad_page.parquet"
printf '\x15\x7e' | dd of="$work/bad_page.parquet" bs=1 seek=4 conv=notrunc status=none
expect_fail bad_page "bad_page.parquet: row group 0, column 'text': page at offset [0-9]+: RLE_DICTIONARY page without" \
    data inspect "$work/bad_page.parquet"

# A footer length pointing before the start of the file.
cp "$nulls" "$work/bad_footer.parquet"
printf '\xff\xff\x00\x00' | dd of="$work/bad_footer.parquet" bs=1 seek=$(($(stat -c %s "$nulls") - 8)) \
    conv=notrunc status=none
expect_fail bad_footer "bad_footer.parquet: footer length 65535 exceeds the file" \
    data inspect "$work/bad_footer.parquet"

# The dataset registry: `data prepare --dataset NAME` with a parquet entry whose path is relative
# to the registry file writes the same shards and manifest as preparing the path directly.
mkdir -p "$work/reg/pq"
cp "$snappy" "$zstd" "$work/reg/pq/"
cat >"$work/reg/datasets.toml" <<'TOML'
[datasets.fw]
path = "pq/*.parquet"
format = "parquet"

[datasets.fw_counts]
path = "pq/fineweb_like_zstd_dict_v2.parquet"
text_field = "token_count"

[datasets.gone]
path = "nowhere/*.jsonl"
TOML
"$agpt" data prepare "$work/reg/pq/"*.parquet --out "$work/direct" --val-fraction 0.05 \
    --workers 2 >/dev/null 2>&1
expect_out prepare_by_name "6000 documents" -- data prepare --dataset fw \
    --datasets "$work/reg/datasets.toml" --out "$work/by_name" --val-fraction 0.05 --workers 1
AGPT_DATASETS="$work/reg/datasets.toml" "$agpt" data prepare --dataset fw --out "$work/by_env" \
    --val-fraction 0.05 --workers 2 >/dev/null 2>&1
for f in train_000000.bin val_000000.bin manifest.json; do
    for d in by_name by_env; do
        if cmp -s "$work/direct/$f" "$work/$d/$f"; then
            passed=$((passed + 1))
        else
            failed=$((failed + 1))
            echo "FAIL registry_same_shards: $d/$f differs from preparing the path directly"
        fi
    done
done
expect_out data_list "registry: .*/reg/datasets.toml \(--datasets\)" \
    "^tinyshakespeare +txt +text +.*tinyshakespeare.txt$" "^fw +parquet +text +.*/reg/pq/\*.parquet$" \
    "^gone +jsonl +text +.*/reg/nowhere/\*.jsonl +\(missing\)$" \
    -- data list --datasets "$work/reg/datasets.toml"
expect_fail unknown_name "--dataset 'fineweb': not a dataset name.*known names: tinyshakespeare \(built-in\); fw, fw_counts, gone \(.*/reg/datasets.toml\)" \
    data prepare --dataset fineweb --datasets "$work/reg/datasets.toml" --out "$work/x"
expect_fail missing_path "--dataset 'gone': no file or folder matches its path '.*/reg/nowhere/\*.jsonl'" \
    data prepare --dataset gone --datasets "$work/reg/datasets.toml" --out "$work/x"
expect_fail int_text_field "fineweb_like_zstd_dict_v2.parquet: column 'token_count' holds INT64" \
    data prepare --dataset fw_counts --datasets "$work/reg/datasets.toml" --out "$work/x"
printf '[datasets.a]\npath = "pq"\nformat = "csv"\n' >"$work/reg/bad.toml"
expect_fail bad_format "bad.toml: datasets.a.format: unknown format 'csv'" \
    data prepare --dataset a --datasets "$work/reg/bad.toml" --out "$work/x"
expect_fail no_registry "dataset registry '.*/none.toml': no such file" \
    data prepare --dataset fw --datasets "$work/none.toml" --out "$work/x"
[[ ! -e "$work/x" && ! -e "$work/x.tmp" ]] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL left_output"; }

echo "data_cli: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
