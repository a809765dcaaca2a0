add_test(NAME data_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/data_cli_test.sh $<TARGET_FILE:agpt>
  ${CMAKE_CURRENT_SOURCE_DIR}/data/parquet)
set_tests_properties(data_cli PROPERTIES TIMEOUT 120)
