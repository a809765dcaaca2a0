# Hugging Face export checked against an independent Llama in PyTorch (tests/torch_ref): the
# agpt program trains two tiny runs (GQA and plain multi-head), exports them, and the Python
# side rebuilds a LlamaForCausalLM from config.json + model.safetensors and compares logits with
# agpt_hf_logits' and `agpt generate --logprobs`' output.
add_executable(agpt_hf_logits ${CMAKE_CURRENT_SOURCE_DIR}/hf_logits_dump.cpp)
target_link_libraries(agpt_hf_logits PRIVATE agpt_lib CLI11::CLI11)

find_program(AGPT_HF_TORCH_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(AGPT_HF_TORCH_PYTHON)
  add_test(NAME torch_hf_export
    COMMAND ${AGPT_HF_TORCH_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/torch_ref/test_hf_export.py
            $<TARGET_FILE:agpt> $<TARGET_FILE:agpt_hf_logits>
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  # Exit code 77 (no torch on this machine) reports the test as skipped, not passed.
  set_tests_properties(torch_hf_export PROPERTIES TIMEOUT 900 LABELS torch SKIP_RETURN_CODE 77)
endif()
