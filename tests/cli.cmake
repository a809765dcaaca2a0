add_test(NAME cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli_test.sh $<TARGET_FILE:agpt>)
set_tests_properties(cli PROPERTIES TIMEOUT 300)
