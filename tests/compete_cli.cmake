# `agpt compete` end to end on a tiny competition (tests/compete_cli_test.sh).
add_test(NAME compete_cli
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/compete_cli_test.sh $<TARGET_FILE:agpt>
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(compete_cli PROPERTIES TIMEOUT 600)
