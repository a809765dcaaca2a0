# `agpt bench --sweep` end to end on a small grid with an impossible cell (tests/bench_sweep_cli_test.sh).
add_test(NAME bench_sweep_cli
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/bench_sweep_cli_test.sh $<TARGET_FILE:agpt>
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(bench_sweep_cli PROPERTIES TIMEOUT 600)
