# The independent PyTorch reference (tests/torch_ref): agpt_model_dump writes the agpt model's
# weights, logits, loss, gradients and AdamW losses; the Python side recomputes them in PyTorch.
add_executable(agpt_model_dump ${CMAKE_CURRENT_SOURCE_DIR}/model_dump.cpp)
target_link_libraries(agpt_model_dump PRIVATE agpt_lib CLI11::CLI11)

# Debian's torch imports only under the system interpreter, not whatever python3 is first on PATH.
find_program(AGPT_TORCH_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(AGPT_TORCH_PYTHON)
  add_test(NAME torch_reference_model
    COMMAND ${AGPT_TORCH_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/torch_ref/test_model_vs_torch.py
            $<TARGET_FILE:agpt_model_dump>
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  # Exit code 77 (no torch on this machine) reports the test as skipped, not passed.
  set_tests_properties(torch_reference_model PROPERTIES TIMEOUT 900 LABELS torch SKIP_RETURN_CODE 77)
endif()

# The MLA + MoE model against its PyTorch twin (tests/torch_ref/moe_torch.py).
if(AGPT_TORCH_PYTHON)
  add_test(NAME torch_reference_moe
    COMMAND ${AGPT_TORCH_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/torch_ref/test_moe_vs_torch.py
            $<TARGET_FILE:agpt_model_dump>
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(torch_reference_moe PROPERTIES TIMEOUT 900 LABELS torch SKIP_RETURN_CODE 77)
endif()
