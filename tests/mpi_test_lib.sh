# Sourced by the MPI test scripts (distributed*_test.sh): a scratch folder removed at exit, the
# pass/fail counts with check, and mpirun on loopback as root with more ranks than cores.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
check() {  # check NAME CONDITION_EXIT_STATUS MESSAGE
    if [[ $2 -eq 0 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL $1: $3"; fi
}
mpirun_np() {
    local n="$1"
    shift
    mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$n" "$@"
}
