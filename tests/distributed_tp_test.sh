#!/usr/bin/env bash
# Tensor parallelism over MPI (OpenMPI on loopback), tiny_qknorm_softcap with final_softcap:
# - TP=2 (also with activation checkpointing) and DP×TP = 2×2 reproduce the single-process loss and gradient-norm curves at the same
#   global batch (relative difference <= 1e-5 at each of 20 steps);
# - checkpoints hold full tensors: a TP=2 checkpoint resumes on one process, and a one-process
#   checkpoint on TP=2, each continuing within 1e-5 of the run that wrote it; the files carry
#   the same tensor names and shapes as a one-process checkpoint;
# - what TP does not cover is refused before any work, naming the key and the reason.
# Usage: distributed_tp_test.sh path/to/agpt
set -u
agpt="$1"
source "$(dirname "$0")/mpi_test_lib.sh"
# Global batch 8 sequences of 64 tokens, 2 per micro-batch.
train_args=(train --job.dump_folder "$work" --model.flavor tiny_qknorm_softcap
    --model.final_softcap 15 --training.seq_len 64 --training.local_batch_size 2
    --training.global_batch_size 8 --training.steps 20 --training.threads 1 --metrics.log_freq 1
    --validation.enable false --lr_scheduler.warmup_steps 5 --sample.max_new_tokens 0)
ckpt_args=(--checkpoint.enable true --checkpoint.interval 10)
compare() {  # compare RUN_A RUN_B FIRST_STEP: loss and grad_norm from FIRST_STEP to 20
    /usr/bin/python3 - "$work/$1/metrics.jsonl" "$work/$2/metrics.jsonl" "$3" <<'PY'
import json, sys
a, b = ({r["step"]: r for r in map(json.loads, open(p)) if "loss" in r} for p in sys.argv[1:3])
steps = range(int(sys.argv[3]), 21)
assert all(s in a and s in b for s in steps), (sorted(a), sorted(b))
worst = max(abs(a[s][k] - b[s][k]) / abs(a[s][k]) for s in steps for k in ("loss", "grad_norm"))
print(f"{sys.argv[1].split('/')[-2]} vs {sys.argv[2].split('/')[-2]}, steps {steps.start}-20: "
      f"worst relative loss/grad_norm difference {worst:.2e}")
assert worst <= 1e-5, worst
PY
}

"$agpt" "${train_args[@]}" "${ckpt_args[@]}" --job.name single >"$work/single.log" 2>&1
check single_run $? "$(tail -3 "$work/single.log")"
mpirun_np 2 "$agpt" "${train_args[@]}" "${ckpt_args[@]}" --parallelism.tensor_parallel_degree 2 \
    --job.name tp2 >"$work/tp2.log" 2>&1
check tp2_run $? "$(tail -5 "$work/tp2.log")"
compare single tp2 1
check tp2_matches_single $? "curves differ"
grep -q "parallel DP 1 × TP 2 × EP 1 = 2 ranks" "$work/tp2.log" && [[ $(grep -c "^step" "$work/tp2.log") -eq 20 ]]
check tp2_logs_once $? "$(grep -c "^step" "$work/tp2.log") step lines"
mpirun_np 4 "$agpt" "${train_args[@]}" --parallelism.tensor_parallel_degree 2 \
    --job.name dp2tp2 >"$work/dp2tp2.log" 2>&1
check dp2tp2_run $? "$(tail -5 "$work/dp2tp2.log")"
compare single dp2tp2 1
check dp2tp2_matches_single $? "curves differ"
mpirun_np 2 "$agpt" "${train_args[@]}" --parallelism.tensor_parallel_degree 2 \
    --activation_checkpoint.mode full --job.name tp2_recompute >"$work/tp2_recompute.log" 2>&1
check tp2_recompute_run $? "$(tail -5 "$work/tp2_recompute.log")"
compare single tp2_recompute 1
check tp2_recompute_matches_single $? "curves differ"

# The same tensor names, dtypes and shapes as a one-process checkpoint (HF export reads them).
/usr/bin/python3 - "$work/single/checkpoints/step-20/model.safetensors" \
    "$work/tp2/checkpoints/step-20/model.safetensors" <<'PY'
import json, struct, sys
def header(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    return {k: (v["dtype"], v["shape"]) for k, v in h.items() if k != "__metadata__"}
a, b = header(sys.argv[1]), header(sys.argv[2])
assert a == b, set(a.items()) ^ set(b.items())
print(f"TP=2 checkpoint: {len(b)} tensors, names and shapes as one process's")
PY
check tp2_checkpoint_full_tensors $? "headers differ"

# TP=2 → one process, and one process → TP=2, from step 10.
cp -r "$work/tp2" "$work/tp2_to_1"
"$agpt" "${train_args[@]}" "${ckpt_args[@]}" --checkpoint.load_step 10 --job.name tp2_to_1 \
    >"$work/tp2_to_1.log" 2>&1
check tp2_to_1_run $? "$(tail -3 "$work/tp2_to_1.log")"
grep -q "resumed from .*step-10" "$work/tp2_to_1.log" && compare tp2 tp2_to_1 11
check tp2_to_1_continues $? "$(grep -i "resumed\|error" "$work/tp2_to_1.log")"
cp -r "$work/single" "$work/single_to_tp2"
mpirun_np 2 "$agpt" "${train_args[@]}" "${ckpt_args[@]}" --checkpoint.load_step 10 \
    --parallelism.tensor_parallel_degree 2 --job.name single_to_tp2 >"$work/single_to_tp2.log" 2>&1
check single_to_tp2_run $? "$(tail -3 "$work/single_to_tp2.log")"
grep -q "resumed from .*step-10" "$work/single_to_tp2.log" && compare single single_to_tp2 11
check single_to_tp2_continues $? "$(grep -i "resumed\|error" "$work/single_to_tp2.log")"

# Refused before the run folder exists.
refused() {  # refused NAME MESSAGE ARGS...
    local name="$1" message="$2"
    shift 2
    out=$(mpirun_np 2 "$agpt" "${train_args[@]}" --job.name "$name" "$@" 2>&1)
    rc=$?
    [[ $rc -ne 0 ]] && grep -qF "$message" <<<"$out" && [[ ! -e "$work/$name" ]]
    check "$name" $? "rc=$rc: $out"
}
refused tp_muon_refused "parallelism.tensor_parallel_degree = 2 with optimizer Muon: its orthogonalisation needs whole matrices" \
    --parallelism.tensor_parallel_degree 2 --optimizer.name Muon
refused tp_moe_refused "tensor parallelism covers the dense agpt flavors only, not agpt/moe_tiny" \
    --parallelism.tensor_parallel_degree 2 --model.flavor moe_tiny --model.qk_norm false
refused tp_heads_refused "parallelism: world size 2 is not divisible by tensor_parallel_degree 4" \
    --parallelism.tensor_parallel_degree 4

echo "distributed_tp: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
