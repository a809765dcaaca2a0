add_test(NAME resume COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/resume_test.sh $<TARGET_FILE:agpt>)
set_tests_properties(resume PROPERTIES TIMEOUT 600)
