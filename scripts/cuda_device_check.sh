#!/usr/bin/env bash
# The CUDA backend's device check (issue 10), in two steps:
#
#   scripts/cuda_device_check.sh build   # on a build machine with the CUDA toolkit (no GPU needed)
#   scripts/cuda_device_check.sh run     # on the GPU machine, from the repository root
#
# build: configures and builds the cuda-portable preset (build tree build/cuda_portable_build:
#   agpt, agpt_cuda_tests and agpt_cuda_model_bench for x86-64-v3) and packs them with the shared
#   libraries they load into build/cuda_portable/bundle.tar.xz. Carry build/cuda_portable only.
# run [PARTS]: unpacks the bundle, prints nvidia-smi -L and `agpt doctor`, then the PARTS asked
#   for (a comma list; default all four, which may not fit one 10-minute device call: split it):
#     tests  every op, model and training test on the device (agpt_cuda_tests: CUDA vs CPU);
#     bench  the kernel micro-benchmarks (agpt_cuda_tests --bench) and PyTorch's on the same shapes;
#     e2e    agpt_cuda_model_bench --breakdown (where a step's time goes; GPT-2 also with
#            AGPT_GEMM_EPILOGUE=none, the unfused GEMMs), then bench/cuda_vs_torch.sh:
#            `agpt bench --training.device cuda` against PyTorch eager and torch.compile on GPT-2
#            124M and the Llama-style 124M, 32 x 1024, bf16, agpt also under the split attention
#            backward, the wide forward and both (AGPT_ATTN_BACKWARD=split, AGPT_ATTN_FORWARD=wide);
#     train  `agpt train --training.device cuda` (bf16) against the CPU on the debugmodel config,
#            100 steps, the loss curves compared (train_cuda_vs_cpu below);
#   then a summary table (last). Logs and the JSON report go to $OUT when it is set (the device
#   tool brings that folder back), else build/cuda_portable/device_check. Exit status: that of the
#   op tests; 3 when tests were skipped for want of a device; 4 when only `train` failed.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=build/cuda_portable
BUILD_DIR=build/cuda_portable_build
BIN=$DIR/agpt_cuda_tests
MODEL_BIN=$DIR/agpt_cuda_model_bench

# The programs the GPU machine runs.
PROGRAMS=(agpt tests/cuda/agpt_cuda_tests tests/cuda/agpt_cuda_model_bench)

# Builds the cuda-portable preset (x86-64-v3) and packs its programs with every shared library
# they load, glibc and its loader included (the GPU machine's glibc may be older than the build
# machine's), but not the driver's libcuda nor cuBLAS/NCCL (opened at run time from the toolkit
# there), into $DIR/bundle.tar.xz: xz keeps it inside what can be carried (ICU's data and
# OpenBLAS alone are 65 MB unpacked).
build() {
    set -e
    local launcher=()
    command -v ccache >/dev/null &&
        launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
    cmake --preset cuda-portable "${launcher[@]}" >/dev/null
    cmake --build --preset cuda-portable -j2
    local stage=$BUILD_DIR/bundle
    rm -rf "$DIR" "$stage"
    mkdir -p "$DIR" "$stage/lib"
    local prog
    for prog in "${PROGRAMS[@]}"; do
        cp "$BUILD_DIR/$prog" "$stage/"
        strip --strip-unneeded "$stage/$(basename "$prog")"
    done
    for prog in "${PROGRAMS[@]}"; do ldd "$stage/$(basename "$prog")"; done |
        awk '$3 ~ /^\// {print $1, $3} $1 ~ /^\// {print $1, $1}' | sort -u |
        while read -r name path; do
            case "$name" in
                linux-vdso* | libcuda.so* | libcublas* | libnccl*) ;;
                *) cp -L "$path" "$stage/lib/$(basename "$name")" ;;
            esac
        done
    tar -C "$BUILD_DIR" -cJf "$DIR/bundle.tar.xz" bundle
    echo "== $DIR/bundle.tar.xz: $(du -h "$DIR/bundle.tar.xz" | cut -f1) ($(ls "$stage" | wc -l)" \
        "entries and $(ls "$stage/lib" | wc -l) libraries, $(du -sh "$stage" | cut -f1) unpacked)"
    echo "== the GPU machine must provide: a driver for CUDA" \
        "$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')," \
        "libcublas.so.$(sed -n 's/#define CUBLAS_VER_MAJOR \([0-9]*\)/\1/p' "$(dirname "$(command -v nvcc)")/../include/cublas_api.h") and libcublasLt (opened at run time: src/kernels/cuda/cublas_loader.h)"
    local size
    size=$(du -sm "$DIR" | cut -f1)
    echo "== $DIR: ${size} MB in all (carry it to the GPU machine; the limit is 60 MB)"
    if ((size >= 60)); then
        echo "cuda_device_check: $DIR is ${size} MB, over 60 MB" >&2
        exit 1
    fi
}

# Unpacks the bundle and writes $DIR/<program>: a wrapper that starts the bundled program through
# the bundled loader, the bundled libraries first, then LD_LIBRARY_PATH (cuBLAS).
unbundle() {
    rm -rf "$DIR/bundle"
    tar -C "$DIR" -xJf "$DIR/bundle.tar.xz"
    local loader prog name
    loader=$(ls "$PWD/$DIR"/bundle/lib/ld-linux-x86-64.so.* | head -1)
    for prog in "${PROGRAMS[@]}"; do
        name=$(basename "$prog")
        cat >"$DIR/$name" <<SH
#!/bin/sh
exec "$loader" --library-path "$PWD/$DIR/bundle/lib:\${LD_LIBRARY_PATH:-}" "$PWD/$DIR/bundle/$name" "\$@"
SH
        chmod +x "$DIR/$name"
    done
}

# agpt train on the GPU (training.device = cuda, bf16) and on the CPU (fp32), same job: the
# debugmodel config for 100 steps, loss logged every 5. The bf16 curve must track the CPU's:
# every logged loss within 0.05 nats of the CPU's at the same step, and the final validation loss
# too (CUDA_TRAIN_TOLERANCE overrides). Runs $AGPT_BIN, else the bundle's $DIR/agpt.
train_cuda_vs_cpu() {
    local out=$1 agpt_bin=${AGPT_BIN:-$DIR/agpt}
    echo "== agpt train --training.device cuda vs cpu (debugmodel, 100 steps)"
    if ! [[ -x $agpt_bin ]] || ! "$agpt_bin" --help >/dev/null 2>&1; then
        echo "FAILED: no agpt that runs here ($agpt_bin; set AGPT_BIN to a portable build)"
        return 1
    fi
    local runs=$out/train_runs
    rm -rf "$runs"
    local job=(--config configs/debugmodel.toml --job.dump_folder "$runs" --training.steps 100
        --metrics.log_freq 5 --validation.freq 100 --sample.max_new_tokens 0)
    timeout 300 "$agpt_bin" train "${job[@]}" --job.name cuda --training.device cuda \
        --training.mixed_precision_param bfloat16 2>&1 | tee "$out/train_cuda.log" || true
    timeout 600 "$agpt_bin" train "${job[@]}" --job.name cpu --training.device cpu 2>&1 |
        tee "$out/train_cpu.log" || true
    python3 - "$runs" "${CUDA_TRAIN_TOLERANCE:-0.05}" <<'PY' 2>&1 | tee -a "$out/bench.log"
import json
import os
import sys

curves = {}
for name in ("cuda", "cpu"):
    path = os.path.join(sys.argv[1], name, "metrics.jsonl")
    try:
        rows = [json.loads(line) for line in open(path)]
    except OSError as e:
        print(f"{name}: no metrics ({e})")
        continue
    losses = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    tail = " ".join(f"{s}:{l:.4f}" for s, l in losses[-3:])
    print(f"{name}: loss at steps {tail} | val_loss {val[-1] if val else '-'}")
    if losses:
        print(f"BENCH train_{name}_final_loss {losses[-1][1]:.4f} nats")
    last = next((r for r in reversed(rows) if "loss" in r), {})
    for k in ("tok_per_s", "mfu", "gpu_mem_gib"):
        if k in last:
            print(f"BENCH train_{name}_{k} {last[k]:.4g} -")
    curves[name] = (dict(losses), val[-1] if val else None)
tol = float(sys.argv[2])
if set(curves) != {"cuda", "cpu"}:
    sys.exit("FAILED: a run left no metrics")
(cuda, cuda_val), (cpu, cpu_val) = curves["cuda"], curves["cpu"]
steps = sorted(set(cuda) & set(cpu))
worst = max((abs(cuda[s] - cpu[s]), s) for s in steps) if steps else (float("inf"), -1)
val_gap = abs(cuda_val - cpu_val) if cuda_val is not None and cpu_val is not None else float("inf")
print(f"BENCH train_bf16_vs_cpu_worst_loss_gap {worst[0]:.4f} nats (step {worst[1]}, {len(steps)} steps compared)")
print(f"BENCH train_bf16_vs_cpu_val_loss_gap {val_gap:.4f} nats")
ok = len(steps) >= 20 and worst[0] <= tol and val_gap <= tol
print(f"{'passed' if ok else 'FAILED'}: the bf16 cuda loss curve tracks the cpu one within {tol} nats")
sys.exit(0 if ok else 1)
PY
}

# PyTorch's timings of the micro-benchmarks' shapes (when torch imports).
torch_micro_bench() {
    timeout 240 python3 - <<'PY'
import torch
import torch.nn.functional as F

print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")


def time_ms(f, iters, warmup=3):
    for _ in range(warmup):
        f()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(iters):
        f()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / iters


n = 4096
x = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
w = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
ms = time_ms(lambda: x @ w.t(), 20)
print(f"BENCH torch_gemm_bf16_4096_tflops {2 * n ** 3 / (ms * 1e-3) / 1e12:.3f} TFLOP/s")


def attention(tag, B, H, KV, T, D, dtype):
    q = torch.randn(B, H, T, D, device="cuda", dtype=dtype, requires_grad=True)
    k = torch.randn(B, KV, T, D, device="cuda", dtype=dtype, requires_grad=True)
    v = torch.randn(B, KV, T, D, device="cuda", dtype=dtype, requires_grad=True)
    gqa = {"enable_gqa": True} if KV != H else {}
    f = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa)
    fwd = time_ms(f, 10)
    o = f()
    g = torch.randn_like(o)
    bwd = time_ms(lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True), 10)
    print(f"BENCH torch_attn_fwd_{tag}_ms {fwd:.3f} ms")
    print(f"BENCH torch_attn_bwd_{tag}_ms {bwd:.3f} ms")
    print(f"BENCH torch_attn_fwd+bwd_{tag}_ms {fwd + bwd:.3f} ms")


def rmsnorm(N, C):
    # The residual add stands in for agpt's backward accumulating into the residual gradient.
    x = torch.randn(N, C, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = torch.rand(C, device="cuda", dtype=torch.bfloat16).add_(0.5).requires_grad_()
    fwd = time_ms(lambda: F.rms_norm(x, (C,), w, 1e-5), 20)
    y = F.rms_norm(x, (C,), w, 1e-5)
    g, res = torch.randn_like(y), torch.randn_like(y)
    bwd = time_ms(lambda: torch.autograd.grad(y, (x, w), g, retain_graph=True)[0].add_(res), 20)
    print(f"BENCH torch_rmsnorm_fwd_bf16_N{N}_C{C}_ms {fwd:.3f} ms")
    print(f"BENCH torch_rmsnorm_bwd_bf16_N{N}_C{C}_ms {bwd:.3f} ms")


if hasattr(F, "rms_norm"):
    rmsnorm(32768, 768)
attention("bf16_B8_H12_T1024_hd64", 8, 12, 12, 1024, 64, torch.bfloat16)
attention("bf16_B8_H12_KV4_T1024_hd64", 8, 12, 4, 1024, 64, torch.bfloat16)
attention("bf16_B32_H12_T1024_hd64", 32, 12, 12, 1024, 64, torch.bfloat16)
attention("bf16_B32_H12_KV4_T1024_hd64", 32, 12, 4, 1024, 64, torch.bfloat16)
PY
}

run() {
    local out=${OUT:-$DIR/device_check} parts=",${1:-tests,bench,e2e,train},"
    want() { [[ $parts == *",$1,"* ]]; }
    mkdir -p "$out"
    : >"$out/bench.log"
    if [[ ! -f $DIR/bundle.tar.xz ]]; then
        echo "cuda_device_check: $DIR/bundle.tar.xz is missing: run" \
            "'scripts/cuda_device_check.sh build' first and carry $DIR" >&2
        exit 2
    fi
    unbundle
    # The toolkit's cuBLAS, wherever it lives (the bundle's libraries come first anyway).
    local libpath=
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64; do
        [[ -d $d ]] && libpath+=:$d
    done
    # A driver older than the toolkit the binary was built with (CUDA 13): data-center GPUs can
    # use the toolkit's forward-compatibility libcuda.
    local drv
    drv=$(nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\).*/\1/p' | head -1)
    if [[ -n $drv && $drv -lt 13 && -d /usr/local/cuda/compat ]]; then
        echo "== the driver supports CUDA $drv only: using /usr/local/cuda/compat's libcuda"
        libpath=/usr/local/cuda/compat:$libpath
    fi
    # A pip-installed toolkit (nvidia-cublas wheels next to PyTorch) as a last resort.
    # (cuBLAS, and NCCL for `agpt doctor` and multi-GPU runs).
    local pkg pylib
    for pkg in cublas nccl; do
        pylib=$(python3 -c "import nvidia.$pkg, os; print(os.path.join(list(nvidia.$pkg.__path__)[0], 'lib'))" 2>/dev/null) &&
            libpath+=:$pylib
    done
    export LD_LIBRARY_PATH=${libpath#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

    echo "== nvidia-smi -L"
    nvidia-smi -L || echo "(nvidia-smi failed)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
    echo "== agpt doctor"
    "$DIR/agpt" doctor 2>&1 | tee "$out/doctor.log"

    local rc=0 train_rc=0
    if want tests; then
        echo "== op tests: $BIN"
        timeout 600 "$BIN" --gtest_output="json:$out/tests.json" 2>&1 | tee "$out/tests.log"
        rc=${PIPESTATUS[0]}
    fi

    if want bench; then
        echo "== micro-benchmarks: $BIN --bench"
        timeout 300 "$BIN" --bench 2>&1 | tee -a "$out/bench.log" || true
        echo "== PyTorch reference timings (same shapes)"
        torch_micro_bench 2>&1 | tee -a "$out/bench.log" || true
    fi

    if want e2e; then
        echo "== where a step's time goes: $MODEL_BIN --breakdown (llama124m, 32 x 1024, bf16)"
        timeout 180 "$MODEL_BIN" --steps 3 --breakdown 2>&1 | tee "$out/model_bench.log" || true
        echo "== the same for GPT-2 124M, with cuBLASLt's epilogues, then without them"
        timeout 180 "$MODEL_BIN" --model gpt2 --steps 3 --breakdown 2>&1 |
            tee -a "$out/model_bench.log" || true
        AGPT_GEMM_EPILOGUE=none timeout 120 "$MODEL_BIN" --model gpt2 --steps 3 2>&1 |
            sed 's/^BENCH /BENCH unfused_/' | tee -a "$out/model_bench.log" || true
        echo "== end to end, agpt bench (also under the attention switches) against PyTorch:" \
            "bench/cuda_vs_torch.sh"
        timeout 900 bench/cuda_vs_torch.sh "$DIR/agpt" 5 2>&1 |
            tee "$out/cuda_vs_torch.log" | tee -a "$out/bench.log" || true
    fi

    if want train; then
        train_cuda_vs_cpu "$out"
        train_rc=$?
    fi

    echo "== summary"
    python3 - "$out/tests.json" "$out/bench.log" "$rc" "$out/model_bench.log" <<'PY'
import json
import os
import sys

report, bench_log, rc, model_log = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
passed = failed = skipped = 0
rows = []
try:
    data = json.load(open(report))
    for suite in data["testsuites"]:
        for t in suite["testsuite"]:
            name = f'{suite["name"]}.{t["name"]}'
            if t.get("result") == "SKIPPED" or t.get("status") == "NOTRUN":
                status = "SKIP"
                skipped += 1
            elif t.get("failures"):
                status = "FAIL"
                failed += 1
            else:
                status = "ok"
                passed += 1
            rows.append((name, status, t.get("time", ""), t.get("worst", "")))
except (OSError, ValueError, KeyError) as e:
    print(f"no test report ({e}); the test binary exited with {rc}")
bench = {}
for line in open(bench_log, errors="replace"):
    p = line.split()
    if len(p) >= 3 and p[0] == "BENCH":
        bench[p[1]] = (p[2], " ".join(p[3:]))
print(f'{"test":<52} {"result":<6} {"time":>7}  worst err/tol (case)')
for name, status, time, worst in rows:
    print(f"{name:<52} {status:<6} {time:>7}  {worst}")
print()
# The GPU models' steps with the fused GEMM epilogues and without them (e2e).
steps = {}
if os.path.exists(model_log):
    for line in open(model_log, errors="replace"):
        p = line.split()
        if len(p) >= 3 and p[0] == "BENCH" and p[1].endswith("_step_ms"):
            steps[p[1][: -len("_step_ms")]] = p[2]
for base in sorted(k for k in steps if k.startswith("model_") and "unfused_" + k in steps):
    a, b = float(steps[base]), float(steps["unfused_" + base])
    print(f"{base}: step {a:.2f} ms with the GEMM epilogues, {b:.2f} ms without "
          f"(unfused / fused = {b / a:.3f})")
if steps:
    print()
print(f'{"benchmark":<52} {"agpt":>10} {"PyTorch":>10}  unit')
for key in sorted(k for k in bench if not k.startswith(("torch_", "agpt_"))):
    value, unit = bench[key]
    torch_value = bench.get("torch_" + key, ("-", ""))[0]
    print(f"{key:<52} {value:>10} {torch_value:>10}  {unit}")
print()
# End to end: agpt's GPU models against PyTorch on the same model and batch.
for model in ("llama124m", "gpt2_124m"):
    variants = sorted(k[len(f"agpt_{model}_"):-len("_tok_per_s")] for k in bench
                      if k.startswith(f"agpt_{model}_") and k.endswith("_tok_per_s")
                      and k != f"agpt_{model}_tok_per_s")
    e2e = [("agpt bench", f"agpt_{model}"),
           ("PyTorch torch.compile", f"torch_compile_{model}"),
           ("PyTorch eager", f"torch_eager_{model}")]
    e2e += [(f"agpt bench, {v}", f"agpt_{model}_{v}") for v in variants]
    if not any(k + "_tok_per_s" in bench for _, k in e2e):
        continue
    print(f'{model + " training, bf16, 32 x 1024":<36} {"tok/s":>10} {"step ms":>9} '
          f'{"MFU %":>7} {"peak GiB":>9}')
    for label, k in e2e:
        v = [bench.get(f"{k}_{m}", ("-", ""))[0]
             for m in ("tok_per_s", "step_ms", "mfu", "peak_mem_gib")]
        print(f"{label:<36} {v[0]:>10} {v[1]:>9} {v[2]:>7} {v[3]:>9}")
    print()
if skipped:
    print(f"WARNING: {skipped} tests skipped: agpt_cuda_tests saw no CUDA device (see the first "
          "lines of tests.log); those kernels were NOT checked")
print(f"{passed} passed, {failed} failed, {skipped} skipped (agpt_cuda_tests exit status {rc})")
sys.exit(rc if rc else (3 if skipped else 0))
PY
    # The op tests' status; 3 when they passed but skipped tests for want of a device; 4 when
    # only the training comparison failed.
    local summary_rc=$?
    ((summary_rc == 0 && train_rc != 0)) && return 4
    return $summary_rc
}

case "${1:-run}" in
    build) build ;;
    run) run "${2:-}" ;;
    *)
        echo "usage: $0 build | run [tests,bench,e2e,train]" >&2
        exit 2
        ;;
esac
