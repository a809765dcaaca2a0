add_test(NAME tokenizer_cli
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tokenizer_cli_test.sh $<TARGET_FILE:agpt> ${CMAKE_SOURCE_DIR})
set_tests_properties(tokenizer_cli PROPERTIES TIMEOUT 300)
