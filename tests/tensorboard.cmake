add_test(NAME tensorboard_events
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/tensorboard_check.py $<TARGET_FILE:agpt>)
set_tests_properties(tensorboard_events PROPERTIES TIMEOUT 120)
