#!/usr/bin/env bash
# Data parallelism over MPI (OpenMPI on loopback):
# - DP=2 and DP=4 reproduce the single-process loss curve at the same global batch (relative
#   difference <= 1e-5 at each of 20 steps); the metrics carry the cross-rank spread and only
#   rank 0 writes run files;
# - a rank killed with SIGKILL ends the whole job within 60 s with a message naming the rank,
#   and re-running the command resumes from the last checkpoint and repeats the uninterrupted
#   DP=2 run's losses bit for bit;
# - ZeRO-1 equals ZeRO-0 and writes the same checkpoints, which resume on 2 ranks bit for bit
#   and on 1 and 3 ranks within 1e-5;
# - the all-reduce overlapped with backward gives the losses of the one after it, bit for bit;
# - an invalid mesh is refused before any work, with the numbers named.
# Usage: distributed_test.sh path/to/agpt
set -u
agpt="$1"
source "$(dirname "$0")/mpi_test_lib.sh"
# Global batch 8 sequences of 64 tokens: 2 per micro-batch, accumulated over the ranks.
train_args=(train --job.dump_folder "$work" --model.flavor tiny --training.seq_len 64
    --training.local_batch_size 2 --training.global_batch_size 8 --training.steps 20
    --training.threads 1 --metrics.log_freq 1 --validation.enable false --lr_scheduler.warmup_steps 5
    --sample.max_new_tokens 0)

"$agpt" "${train_args[@]}" --job.name single >"$work/single.log" 2>&1
check single_run $? "$(tail -3 "$work/single.log")"
for n in 2 4; do
    mpirun_np "$n" "$agpt" "${train_args[@]}" --job.name "dp$n" >"$work/dp$n.log" 2>&1
    check "dp${n}_run" $? "$(tail -5 "$work/dp$n.log")"
    /usr/bin/python3 - "$work/single/metrics.jsonl" "$work/dp$n/metrics.jsonl" "$n" <<'PY'
import json, sys
def rows(path):
    return [json.loads(l) for l in open(path) if '"loss"' in l]
ref, dp, n = rows(sys.argv[1]), rows(sys.argv[2]), int(sys.argv[3])
assert len(ref) == 20 and len(dp) == 20, (len(ref), len(dp))
worst = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(ref, dp))
print(f"DP={n}: worst relative loss difference over 20 steps {worst:.2e}")
assert worst <= 1e-5, worst
assert ref[-1]["loss"] < ref[0]["loss"] - 0.5, "the run did not learn"
for r in dp:
    assert r["ranks"] == n and r["tokens_seen"] == r["step"] * 8 * 64
    assert r["tok_per_s_min"] <= r["tok_per_s"] <= r["tok_per_s_max"]
    assert abs(r["tok_per_s_total"] - n * r["tok_per_s"]) <= 1e-6 * r["tok_per_s_total"]
    assert r["step_time_s_min"] <= r["step_time_s"] <= r["step_time_s_max"]
PY
    check "dp${n}_matches_single" $? "loss curves differ"
    lines=$(grep -c "^step" "$work/dp$n.log")
    [[ $lines -eq 20 ]] && [[ $(ls "$work/dp$n" | sort | tr '\n' ' ') == "config.toml metrics.jsonl tokenizer.json train.log " ]]
    check "dp${n}_rank0_writes" $? "$lines step lines; run folder: $(ls -a "$work/dp$n")"
done

# ZeRO-1 (optimizer state sharded by whole parameters, reduce-scatter + all-gather) equals
# ZeRO-0 on DP=2 bit for bit, for an elementwise optimizer (AdamW) and a matrix one (Muon, whose
# norms and embeddings go to an AdamW: two state sets); their checkpoints (the owners' state
# gathered on rank 0) are byte-identical. Global batch 12: 3 micro-batches on 2 ranks, 2 on 3.
compare_losses() {  # compare_losses RUN_A RUN_B TOLERANCE [FIRST_STEP]
    /usr/bin/python3 - "$work/$1/metrics.jsonl" "$work/$2/metrics.jsonl" "$3" "${4:-1}" <<'PY'
import json, sys
a, b = ({r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r} for p in sys.argv[1:3])
first = int(sys.argv[4])
assert sorted(a) == sorted(b) == list(range(1, 21)), (sorted(a), sorted(b))
worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in range(first, 21))
print(f"{sys.argv[1].split('/')[-2]} vs {sys.argv[2].split('/')[-2]}: worst relative loss difference at steps {first}-20 {worst:.2e}")
assert worst <= float(sys.argv[3]), worst
PY
}
zero_args=(--training.global_batch_size 12 --checkpoint.enable true --checkpoint.interval 10)
for opt in AdamW Muon; do
    for z in 0 1; do
        mpirun_np 2 "$agpt" "${train_args[@]}" "${zero_args[@]}" --optimizer.name "$opt" \
            --parallelism.zero "$z" --job.name "zero${z}_$opt" >"$work/zero${z}_$opt.log" 2>&1
        check "zero${z}_${opt}_run" $? "$(tail -5 "$work/zero${z}_$opt.log")"
    done
    compare_losses "zero0_$opt" "zero1_$opt" 0
    check "zero1_equals_zero0_$opt" $? "losses differ"
    for step in 10 20; do
        for f in model optimizer; do
            cmp "$work/zero0_$opt/checkpoints/step-$step/$f.safetensors" \
                "$work/zero1_$opt/checkpoints/step-$step/$f.safetensors"
            check "zero1_checkpoint_equals_zero0_${opt}_${step}_$f" $? "files differ"
        done
    done
done
state_mib() { sed -n 's/^optimizer .* | state \([0-9.]*\) MiB.*/\1/p' "$work/$1.log"; }
/usr/bin/python3 -c "import sys; sys.exit(not float(sys.argv[2]) < 0.6 * float(sys.argv[1]))" \
    "$(state_mib zero0_AdamW)" "$(state_mib zero1_AdamW)"
check zero1_shards_state $? "rank 0 optimizer state: ZeRO-0 $(state_mib zero0_AdamW) MiB, ZeRO-1 $(state_mib zero1_AdamW) MiB"

# Resumed from its step-10 checkpoint, a ZeRO-1 run repeats steps 11-20 bit for bit (and writes
# the same step-20 checkpoint) on 2 ranks; on 1 rank (ZeRO-0, 6 micro-batches) and on 3 ranks
# (ZeRO-1) the data order is exact (2 x 60 windows taken = 1 x 120 = 3 x 40) and only the
# summation order of the gradient differs.
zero_losses() {
    /usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    print(d["step"], repr(d["loss"]))' "$work/$1/metrics.jsonl"
}
for opt in AdamW Muon; do
    cp -r "$work/zero1_$opt" "$work/zero1_${opt}_again"
    mpirun_np 2 "$agpt" "${train_args[@]}" "${zero_args[@]}" --optimizer.name "$opt" \
        --parallelism.zero 1 --checkpoint.load_step 10 --job.name "zero1_${opt}_again" \
        >"$work/zero1_${opt}_again.log" 2>&1
    check "zero1_${opt}_resume_run" $? "$(tail -5 "$work/zero1_${opt}_again.log")"
    grep -q "resumed from .*step-10 (step 10)" "$work/zero1_${opt}_again.log" &&
        cmp -s <(zero_losses "zero1_$opt") <(zero_losses "zero1_${opt}_again") &&
        cmp "$work/zero1_$opt/checkpoints/step-20/optimizer.safetensors" \
            "$work/zero1_${opt}_again/checkpoints/step-20/optimizer.safetensors"
    check "zero1_${opt}_resume_bit_identical" $? "$(diff <(zero_losses "zero1_$opt") <(zero_losses "zero1_${opt}_again") | head -5)"
done
for ranks in 1 3; do
    cp -r "$work/zero1_Muon" "$work/zero1_Muon_on$ranks"
    launch=(mpirun_np 3)
    zero=1
    [[ $ranks -eq 1 ]] && launch=() && zero=0
    "${launch[@]}" "$agpt" "${train_args[@]}" "${zero_args[@]}" --optimizer.name Muon \
        --parallelism.zero "$zero" --checkpoint.load_step 10 --job.name "zero1_Muon_on$ranks" \
        >"$work/zero1_Muon_on$ranks.log" 2>&1
    check "zero1_Muon_resume_on_${ranks}_run" $? "$(tail -5 "$work/zero1_Muon_on$ranks.log")"
    grep -q "checkpoint written by 2 data-parallel ranks, resumed on $ranks: 120 windows of epoch 0 taken, continuing at position $((120 / ranks)) per rank$" \
        "$work/zero1_Muon_on$ranks.log" && compare_losses zero1_Muon "zero1_Muon_on$ranks" 1e-5 11
    check "zero1_Muon_resume_on_$ranks" $? "$(grep -i "resumed\|error" "$work/zero1_Muon_on$ranks.log")"
done

# The gradient all-reduce overlapped with backward (the default) gives the same bits as the
# all-reduce after it: small buckets (0.25 MiB), several per step, started while backward runs.
for overlap in true false; do
    mpirun_np 2 "$agpt" "${train_args[@]}" --parallelism.bucket_mb 0.25 \
        --parallelism.overlap_grad_reduce "$overlap" --job.name "overlap_$overlap" \
        >"$work/overlap_$overlap.log" 2>&1
    check "overlap_${overlap}_run" $? "$(tail -5 "$work/overlap_$overlap.log")"
done
compare_losses overlap_true overlap_false 0 && grep -q "reduced during backward" "$work/overlap_true.log" &&
    ! grep -q "reduced during backward" "$work/overlap_false.log"
check overlap_bit_identical $? "losses differ or the log does not say which path ran"

# Kill rank 1 of a checkpointed DP=2 run (80 steps, long enough to be killed midway) after its
# second checkpoint, then resume.
ckpt_args=(--checkpoint.enable true --checkpoint.interval 5 --training.steps 80)
mpirun_np 2 "$agpt" "${train_args[@]}" "${ckpt_args[@]}" --job.name reference >"$work/reference.log" 2>&1
check reference_run $? "$(tail -5 "$work/reference.log")"
mpirun --allow-run-as-root --oversubscribe --bind-to none -np 2 "$agpt" "${train_args[@]}" \
    "${ckpt_args[@]}" --job.name killed >"$work/killed.log" 2>&1 &
launcher=$!  # mpirun itself: the ranks are its children
for _ in $(seq 1 1200); do
    [[ $(grep -c "^checkpoint" "$work/killed.log") -ge 2 ]] && break
    sleep 0.05
done
victim=""
for pid in $(pgrep -P "$launcher"); do
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && victim=$pid
done
[[ -n "$victim" ]]
check found_rank1 $? "no rank 1 among the children of mpirun $launcher"
start=$(date +%s.%N)
kill -KILL "$victim"
( sleep 90; kill -KILL "$launcher" 2>/dev/null ) &
watchdog=$!
wait "$launcher"
rc=$?
kill "$watchdog" 2>/dev/null
elapsed=$(/usr/bin/python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
grep -B1 -A3 "rank 1" "$work/killed.log" | head -8
echo "killed rank 1: job ended in ${elapsed}s with status $rc"
[[ $rc -ne 0 ]] && /usr/bin/python3 -c "import sys; sys.exit(float(sys.argv[1]) > 60)" "$elapsed" &&
    grep -q "rank 1 .*exited on signal 9" "$work/killed.log"
check killed_rank_stops_job $? "rc=$rc after ${elapsed}s: $(tail -8 "$work/killed.log")"
! grep -q "^done in" "$work/killed.log"
check killed_before_done $? "the run finished before the kill"
mpirun_np 2 "$agpt" "${train_args[@]}" "${ckpt_args[@]}" --job.name killed >>"$work/killed.log" 2>&1
check resumed_run $? "$(tail -5 "$work/killed.log")"
grep -q "resumed from" "$work/killed.log"
check resumed_from_checkpoint $? "no resume line"
losses() {
    /usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    print(d["step"], repr(d["loss"]))' "$work/$1/metrics.jsonl"
}
cmp -s <(losses reference) <(losses killed)
check resume_bit_identical $? "$(diff <(losses reference) <(losses killed) | head -5)"

# A 2-rank checkpoint resumed by one process (global batch unchanged: 4 accumulation steps)
# continues where the two ranks would have: steps 81-85 match the 2-rank continuation.
cp -r "$work/reference" "$work/reference_1rank"
mpirun_np 2 "$agpt" "${train_args[@]}" "${ckpt_args[@]}" --training.steps 85 \
    --job.name reference >>"$work/reference.log" 2>&1
check extend_2ranks $? "$(tail -3 "$work/reference.log")"
"$agpt" "${train_args[@]}" "${ckpt_args[@]}" --training.steps 85 --job.name reference_1rank \
    >"$work/reference_1rank.log" 2>&1
check resume_on_1rank $? "$(tail -3 "$work/reference_1rank.log")"
grep -q "checkpoint written by 2 data-parallel ranks, resumed on 1: .* continuing at position" \
    "$work/reference_1rank.log" && /usr/bin/python3 - "$work/reference/metrics.jsonl" \
    "$work/reference_1rank/metrics.jsonl" <<'PY'
import json, sys
a, b = ({r["step"]: r["loss"] for r in map(json.loads, open(p)) if "loss" in r} for p in sys.argv[1:3])
worst = max(abs(a[s] - b[s]) / a[s] for s in range(81, 86))
print(f"2-rank checkpoint resumed on 1 rank: worst relative loss difference at steps 81-85 {worst:.2e}")
assert worst <= 1e-5, worst
PY
check resume_2_to_1_ranks $? "$(grep -i "resumed\|error" "$work/reference_1rank.log")"

# Invalid meshes: refused before any work, with the numbers.
out=$(mpirun_np 2 "$agpt" "${train_args[@]}" --job.name badmesh --parallelism.data_parallel_degree 4 2>&1)
rc=$?
[[ $rc -ne 0 ]] && grep -q "world size 2 is not data_parallel_degree 4 × tensor_parallel_degree 1 × expert_parallel_degree 1 = 4" <<<"$out" &&
    [[ ! -e "$work/badmesh" ]]
check bad_mesh_refused $? "rc=$rc: $out"
out=$(mpirun_np 2 "$agpt" "${train_args[@]}" --job.name badbatch --training.global_batch_size 6 2>&1)
rc=$?
[[ $rc -ne 0 ]] && grep -q "global_batch_size = 6 is not a multiple of training.local_batch_size 2 × 2 data-parallel ranks = 4" <<<"$out" &&
    [[ ! -e "$work/badbatch" ]]
check bad_batch_refused $? "rc=$rc: $out"

echo "distributed: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
