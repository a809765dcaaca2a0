#!/usr/bin/env bash
# agpt against PyTorch on one GPU, side by side in one run: GPT-2 124M (the gpt2 family's `124M`)
# and the Llama-style 124M (`llama124m`: dim 768, 12 layers, 12 heads, 4 kv heads, vocab 32000,
# SwiGLU), batch 32 x seq 1024, bf16 with fp32 master weights, AdamW, random tokens.
#
#   bench/cuda_vs_torch.sh [AGPT] [STEPS]      (AGPT: the agpt to run, default build/release/agpt)
#
# agpt: `agpt bench --training.device cuda` (median step of STEPS after 3 warm-up steps; MFU
# against the device's bf16 peak; gpu_mem_gib: device memory the job added). PyTorch:
# bench/torch_gpt2_gpu.py and bench/torch_llama_gpu.py, eager then torch.compile (median step;
# torch.cuda.max_memory_allocated). Prints BENCH lines (the device check's format) and a table
# per model with agpt's tokens/s as a ratio of torch.compile's and its memory as a ratio of
# PyTorch's. Exit status: 0 when every run produced numbers.
#
# AGPT_VARIANTS (default below; "" for none): more agpt runs of each model under the kernel
# comparison switches, as NAME=VAR=VALUE[,VAR=VALUE...] words, reported as agpt_<model>_<NAME>_*
# with their own ratios to torch.compile, so one run on a GPU tells which switches should become
# the defaults.
set -uo pipefail
cd "$(dirname "$0")/.."
AGPT=${1:-build/release/agpt}
STEPS=${2:-8}
VARIANTS=${AGPT_VARIANTS-"split=AGPT_ATTN_BACKWARD=split wide=AGPT_ATTN_FORWARD=wide split_wide=AGPT_ATTN_BACKWARD=split,AGPT_ATTN_FORWARD=wide"}
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT

agpt_bench() {  # NAME, then agpt bench's model options
    local name=$1
    shift
    echo "== agpt bench --training.device cuda $* (32 x 1024, bf16)"
    local json
    json=$(timeout 300 "$AGPT" bench --training.device cuda \
        --training.mixed_precision_param bfloat16 --training.local_batch_size 32 \
        --training.seq_len 1024 --steps "$STEPS" --warmup 3 "$@") || {
        echo "agpt bench failed" >&2
        return 1
    }
    echo "$json"
    python3 - "$name" "$json" <<'PY' | tee -a "$LOG"
import json
import sys

name, r = sys.argv[1], json.loads(sys.argv[2])
print(f"BENCH agpt_{name}_tok_per_s {r['tok_per_s']:.0f} tok/s")
print(f"BENCH agpt_{name}_step_ms {1e3 * r['step_time_s']:.2f} ms")
print(f"BENCH agpt_{name}_mfu {r['mfu']:.2f} %")
print(f"BENCH agpt_{name}_peak_mem_gib {r['gpu_mem_gib']:.2f} GiB")
PY
}

torch_bench() {  # SCRIPT
    echo "== python3 $1 (eager, torch.compile)"
    timeout 420 python3 "$1" --steps "$STEPS" --warmup 3 2>&1 | tee -a "$LOG"
}

# agpt_bench NAME ..., then once more under each variant's switches (a subshell each).
agpt_bench_variants() {
    local name=$1 variant assign
    shift
    agpt_bench "$name" "$@" || return 1
    for variant in $VARIANTS; do
        (
            IFS=, read -ra assign <<<"${variant#*=}"
            export "${assign[@]}"
            echo "== variant ${variant%%=*}: ${assign[*]}"
            agpt_bench "${name}_${variant%%=*}" "$@"
        ) || echo "agpt bench failed under ${variant}" >&2
    done
}

status=0
agpt_bench_variants gpt2_124m --model.name gpt2 --model.flavor 124M || status=1
torch_bench bench/torch_gpt2_gpu.py || status=1
agpt_bench_variants llama124m --model.flavor llama124m || status=1
torch_bench bench/torch_llama_gpu.py || status=1

python3 - "$LOG" <<'PY' || status=1
import sys

bench = {}
for line in open(sys.argv[1], errors="replace"):
    p = line.split()
    if len(p) >= 3 and p[0] == "BENCH":
        bench[p[1]] = float(p[2])
missing = False


def cell(x):
    return "-" if x is None else f"{x:.0f}" if x >= 1000 else f"{x:.4g}"


for model in ("gpt2_124m", "llama124m"):
    print(f"\n{model}, 32 x 1024, bf16 | tok/s | step ms | MFU % | memory GiB")
    rows = [("agpt", f"agpt_{model}"), ("PyTorch torch.compile", f"torch_compile_{model}"),
            ("PyTorch eager", f"torch_eager_{model}")]
    for label, k in rows:
        v = [bench.get(f"{k}_{m}") for m in ("tok_per_s", "step_ms", "mfu", "peak_mem_gib")]
        missing |= v[0] is None
        print(f"{label:<22} | " + " | ".join(cell(x) for x in v))
    variants = sorted(k[len(f"agpt_{model}_"):-len("_tok_per_s")] for k in bench
                      if k.startswith(f"agpt_{model}_") and k.endswith("_tok_per_s")
                      and k != f"agpt_{model}_tok_per_s")
    for label, k in [(f"agpt {v}", f"agpt_{model}_{v}") for v in variants]:
        v = [bench.get(f"{k}_{m}") for m in ("tok_per_s", "step_ms", "mfu", "peak_mem_gib")]
        print(f"{label:<22} | " + " | ".join(cell(x) for x in v))
    c, cm = bench.get(f"torch_compile_{model}_tok_per_s"), bench.get(f"torch_compile_{model}_peak_mem_gib")
    for v in [""] + [f"_{v}" for v in variants]:
        a, am = bench.get(f"agpt_{model}{v}_tok_per_s"), bench.get(f"agpt_{model}{v}_peak_mem_gib")
        tag = f"{model}{v}"
        if a and c:
            print(f"BENCH ratio_{tag}_tok_per_s_vs_compile {a / c:.3f} x")
        if am and cm:
            print(f"BENCH ratio_{tag}_memory_vs_compile {am / cm:.3f} x")
sys.exit(1 if missing else 0)
PY
exit $status
