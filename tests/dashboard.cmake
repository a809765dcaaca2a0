# `agpt dashboard` end to end in headless Chromium (tests/dashboard_e2e.mjs); it fails, rather
# than skips, when node, playwright-core (web/node_modules) or /usr/bin/chromium is missing.
find_program(AGPT_NODE node)
add_test(NAME dashboard_e2e
  COMMAND ${AGPT_NODE} ${CMAKE_CURRENT_SOURCE_DIR}/dashboard_e2e.mjs $<TARGET_FILE:agpt>
    ${CMAKE_CURRENT_BINARY_DIR}/dashboard_e2e)
set_tests_properties(dashboard_e2e PROPERTIES TIMEOUT 180)
