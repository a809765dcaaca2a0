# End-to-end export / import / generate through the agpt program (tests/generate_cli_test.sh).
add_test(NAME generate_cli
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/generate_cli_test.sh $<TARGET_FILE:agpt>
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(generate_cli PROPERTIES TIMEOUT 600)
