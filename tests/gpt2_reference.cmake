# GPT-2 (src/model/gpt2.*) checked against an independent PyTorch GPT-2 (tests/torch_ref/
# gpt2_ref.py): agpt_gpt2_dump writes a Gpt2's weights, logits, loss and gradients, and the
# logits of a folder `agpt import --llmc` wrote from an llm.c checkpoint the script made.
add_executable(agpt_gpt2_dump ${CMAKE_CURRENT_SOURCE_DIR}/gpt2_dump.cpp)
target_link_libraries(agpt_gpt2_dump PRIVATE agpt_lib CLI11::CLI11)

# The GPT-2 124M step benchmark of issue 6 (bench/gpt2_step_bench.sh runs it); built with the
# tests so that it cannot rot, and smoke-run on the tiny flavor.
add_executable(agpt_gpt2_bench ${CMAKE_SOURCE_DIR}/bench/gpt2_step_bench.cpp)
target_link_libraries(agpt_gpt2_bench PRIVATE agpt_lib CLI11::CLI11)
add_test(NAME gpt2_bench_smoke
  COMMAND $<TARGET_FILE:agpt_gpt2_bench> --flavor gpt2_tiny --batch 2 --seq 32 --threads 1
          --steps 2 --warmup 1)
set_tests_properties(gpt2_bench_smoke PROPERTIES TIMEOUT 120
  PASS_REGULAR_EXPRESSION "\"step_s\": [0-9]")

# Debian's torch imports only under the system interpreter, not whatever python3 is first on PATH.
find_program(AGPT_GPT2_TORCH_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(AGPT_GPT2_TORCH_PYTHON)
  add_test(NAME torch_reference_gpt2
    COMMAND ${AGPT_GPT2_TORCH_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/torch_ref/gpt2_ref.py
            $<TARGET_FILE:agpt> $<TARGET_FILE:agpt_gpt2_dump>
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  # Exit code 77 (no torch on this machine) reports the test as skipped, not passed.
  set_tests_properties(torch_reference_gpt2 PROPERTIES TIMEOUT 900 LABELS torch SKIP_RETURN_CODE 77)
endif()
