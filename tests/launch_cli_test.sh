#!/usr/bin/env bash
# `agpt launch --dry-run` in fake PBS and Slurm job environments prints exactly the launcher
# line; `agpt launch -n 2` really runs two ranks; `agpt submit --no-submit` writes the script;
# `agpt doctor` reports MPI and the scheduler.
# Usage: launch_cli_test.sh path/to/agpt
set -u
agpt=$(realpath "$1")
source "$(dirname "$0")/mpi_test_lib.sh"
cores=$(nproc)
clean_env=(env -i PATH=/usr/bin:/bin)

printf 'node-a\nnode-a\nnode-b\nnode-c\n' >"$work/nodefile"
out=$("${clean_env[@]}" PBS_JOBID=4242.pbs PBS_NODEFILE="$work/nodefile" \
    "$agpt" launch --dry-run --ppn 2 -- agpt train --training.steps 5 2>&1)
expected="mpirun -np 6 --hostfile $work/nodefile --map-by ppr:2:node --bind-to none -x OMP_NUM_THREADS=$((cores / 2 > 0 ? cores / 2 : 1)) -x PATH agpt train --training.steps 5"
[[ "$out" == "$expected" ]]
check pbs_dry_run $? "got: $out | expected: $expected"

out=$("${clean_env[@]}" SLURM_JOB_ID=77 SLURM_NODELIST='nid[01-02]' SLURM_NNODES=2 AGPT_DATA_DIR=/d \
    "$agpt" launch --dry-run --cpu-bind depth -- agpt train 2>&1)
expected="srun --nodes 2 --ntasks 2 --ntasks-per-node 1 --cpus-per-task $cores --cpu-bind=cores --export=ALL,OMP_NUM_THREADS=$cores agpt train"
[[ "$out" == "$expected" ]]
check slurm_dry_run $? "got: $out | expected: $expected"

out=$("${clean_env[@]}" "$agpt" launch --dry-run -n 2 -- agpt train 2>&1)
expected="mpirun -np 2 --bind-to none -x OMP_NUM_THREADS=$((cores / 2 > 0 ? cores / 2 : 1)) -x PATH agpt train"
[[ "$out" == "$expected" ]]
check local_dry_run $? "got: $out | expected: $expected"

out=$("${clean_env[@]}" PBS_JOBID=1 PBS_NODEFILE=/nonexistent "$agpt" launch --dry-run -- agpt train 2>&1)
rc=$?
[[ $rc -ne 0 && "$out" == "agpt: error: PBS_NODEFILE /nonexistent: cannot open" ]]
check pbs_bad_nodefile $? "rc=$rc: $out"

# A real launch (as root, OpenMPI needs its consent and permission to oversubscribe).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
out=$("$agpt" launch -n 2 -- sh -c 'echo "rank $OMPI_COMM_WORLD_RANK threads $OMP_NUM_THREADS"' 2>&1)
rc=$?
[[ $rc -eq 0 ]] && grep -q "^rank 0 threads " <<<"$out" && grep -q "^rank 1 threads " <<<"$out"
check real_launch $? "rc=$rc: $out"
"$agpt" launch -n 2 -- sh -c 'exit 3' >/dev/null 2>&1
rc=$?
[[ $rc -ne 0 ]]
check failed_rank_fails_launch $? "rc=$rc"

cd "$work" || exit 1
out=$("$agpt" submit --scheduler slurm -N 2 -q debug -t 00:10:00 -A proj --no-submit -- agpt train 2>&1)
rc=$?
[[ $rc -eq 0 ]] && grep -q "^wrote agpt-agpt.sbatch" <<<"$out" && grep -q "^#SBATCH --nodes=2$" agpt-agpt.sbatch &&
    grep -q " launch -- agpt train$" agpt-agpt.sbatch
check submit_writes_script $? "rc=$rc: $out"
out=$("$agpt" submit --scheduler slurm -N 2 -q debug --no-submit -- agpt train 2>&1)
rc=$?
[[ $rc -ne 0 ]] && grep -q "agpt-agpt.sbatch already exists" <<<"$out"
check submit_never_overwrites $? "rc=$rc: $out"
out=$("$agpt" submit --scheduler pbs -N 1 -q debug -t 10m -- agpt train 2>&1)
rc=$?
[[ $rc -ne 0 && "$out" == "agpt: error: submit: -t '10m': expected a walltime HH:MM:SS" ]]
check submit_bad_walltime $? "rc=$rc: $out"

out=$("${clean_env[@]}" SLURM_JOB_ID=9 SLURM_NNODES=3 "$agpt" doctor 2>&1)
grep -q "^mpi: compiled in" <<<"$out" && grep -q "^scheduler: slurm job 9 on 3 nodes" <<<"$out"
check doctor $? "$out"

# A two-point weak-scaling study and its projection.
out=$("$agpt" scale --ranks 1,2 --threads 1 --out "$work/scale" --project --nodes 1,64 \
    --link-gbps 200 --latency-us 2 -- "$agpt" train --model.flavor tiny --training.seq_len 32 \
    --training.local_batch_size 2 --training.steps 12 --metrics.log_freq 4 \
    --validation.enable false --sample.max_new_tokens 0 2>&1)
rc=$?
[[ $rc -eq 0 ]] && [[ $(grep -c "^| [12] | [0-9]" "$work/scale/scale.md") -eq 2 ]] &&
    grep -q "^| 1 | [0-9]* | [0-9]* | [0-9.]* | 100.0% |$" "$work/scale/scale.md" &&
    [[ -s "$work/scale/scale.png" ]] && grep -q "^| 64 | [0-9]* | [0-9.]* | [0-9.]* | [0-9.]* | 0.0000 | 0.0000 | [0-9.]*% |$" <<<"$out" &&
    grep -q "fp32 gradients 0.017 GB dense + 0.000 GB routed experts" <<<"$out"
check scale_study $? "rc=$rc: $out"

echo "launch_cli: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
