#!/usr/bin/env bash
# `agpt bench --sweep` end to end: a 2×2 grid of the tiny model, an 80B cell that cannot fit in
# this machine's memory and a cell with an invalid config. The sweep must complete, rank the four
# grid cells and list the other two with their reasons, in Markdown and JSON.
# Usage: bench_sweep_cli_test.sh path/to/agpt   (run from the repository root)
set -u
agpt="$1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
check() {  # NAME COMMAND...: the command must succeed
    local name="$1"
    shift
    if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL $name"; fi
}

cat >"$work/grid.toml" <<'TOML'
steps = 2
warmup = 1
[base]
"model.flavor" = "tiny"
"training.threads" = 1
[grid]
"training.local_batch_size" = [2, 4]
"optimizer.name" = ["AdamW", "Muon"]
[[cell]]
"model.flavor" = "80B"
"training.seq_len" = 8192
[[cell]]
"training.local_batch_size" = 0
TOML

log=$("$agpt" bench --sweep "$work/grid.toml" --out "$work/out" 2>&1)
rc=$?
check "sweep completes (rc=$rc): $log" test $rc -eq 0
md="$work/out/leaderboard.md"
json="$work/out/leaderboard.json"
check "markdown written" test -s "$md"
check "json written" test -s "$json"
check "four ranked cells" test "$(grep -cE '^\| [1-4] \| [24] \| (AdamW|Muon) \| ' "$md")" -eq 4
check "80B reported out of memory" grep -qE '^\| model.flavor=80B training.seq_len=8192 \| out of memory \| needs [0-9.]+ GiB, available' "$md"
check "batch 0 reported invalid" grep -qE '^\| training.local_batch_size=0 \| invalid config \| .*local_batch_size' "$md"
check "progress shown" grep -q '^\[6/6\]' <<<"$log"
# Ranked by tok/s, descending, and the JSON agrees with the Markdown.
/usr/bin/python3 - "$json" <<'PY'
import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
ok = [c for c in cells if c["status"] == "ok"]
assert len(ok) == 4, ok
tok = [c["result"]["tok_per_s"] for c in ok]
assert tok == sorted(tok, reverse=True), tok
assert [c["rank"] for c in ok] == [1, 2, 3, 4]
assert all(c["result"]["peak_rss_gib"] > 0 and c["result"]["mfu"] > 0 for c in ok)
assert [c["status"] for c in cells[4:]] == ["out of memory", "invalid config"], cells[4:]
PY
check "json ranked and complete" test $? -eq 0

# The activation checkpointing axis on real runs: full must peak lower than none.
cat >"$work/ac.toml" <<'TOML'
steps = 1
warmup = 0
[base]
"model.flavor" = "small"
"training.local_batch_size" = 8
"training.seq_len" = 128
"training.threads" = 1
[grid]
"activation_checkpoint.mode" = ["none", "full"]
TOML
"$agpt" bench --sweep "$work/ac.toml" --out "$work/ac" >/dev/null 2>&1
check "checkpointing sweep completes" test $? -eq 0
check "mode column" grep -q '^| rank | activation_checkpoint.mode |' "$work/ac/leaderboard.md"
/usr/bin/python3 - "$work/ac/leaderboard.json" <<'PY'
import json, sys
cells = {c["config"]["activation_checkpoint.mode"]: c for c in json.load(open(sys.argv[1]))["cells"]}
assert all(c["status"] == "ok" for c in cells.values()), cells
assert cells["full"]["result"]["activation_checkpoint"] == "full"
rss = {m: c["result"]["peak_rss_gib"] for m, c in cells.items()}
assert rss["full"] < rss["none"] - 0.02, rss
assert cells["full"]["plan_gib"] < cells["none"]["plan_gib"], cells
PY
check "full peaks lower than none" test $? -eq 0

echo "bench_sweep_cli: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
