# `agpt rl` stopped by SIGTERM or SIGKILL and restarted ends byte-identical to an uninterrupted run.
add_test(NAME rl_resume COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/rl_resume_test.sh $<TARGET_FILE:agpt>)
set_tests_properties(rl_resume PROPERTIES TIMEOUT 900)
