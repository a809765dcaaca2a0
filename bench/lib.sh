# Sourced by the bench/*_throughput.sh and dp_overlap.sh scripts with their own arguments
# (path/to/agpt [REPS] [extra train overrides...]): sets agpt, reps, work (removed at exit) and
# leaves the extra overrides in "$@"; mpirun_np runs N ranks on this machine; summarize prints
# the medians of the runs.
set -eu
agpt=$(realpath "$1")
reps=${2:-3}
shift $(($# >= 2 ? 2 : 1))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mpirun_np() {
    local n="$1"
    shift
    mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$n" "$@"
}
# summarize NAME=LABEL ...: for runs NAME_1..NAME_reps, the median over runs of each run's median
# total tok/s over the logged windows after the first (and rank 0's peak RSS where NAME_1.log
# holds the train log), then the ratio of the last NAME to the first.
summarize() {
    /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/summarize_runs.py" "$work" "$reps" "$@"
}
