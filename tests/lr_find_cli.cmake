# `agpt lr-find` end to end (the sweep itself is tested in tests/lr_find_test.cpp).
add_test(NAME cli_lr_find COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/lr_find_cli_test.sh
  $<TARGET_FILE:agpt> ${CMAKE_SOURCE_DIR}/configs/debugmodel.toml)
set_tests_properties(cli_lr_find PROPERTIES TIMEOUT 600)
