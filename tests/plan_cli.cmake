# `agpt plan`: the command's wiring (the estimate itself is tested in tests/plan_test.cpp).
add_test(NAME cli_plan_table COMMAND agpt plan --model.flavor 8B --training.local_batch_size 1
  --training.seq_len 8192 --device-memory-gib 80)
set_tests_properties(cli_plan_table PROPERTIES
  PASS_REGULAR_EXPRESSION "agpt/8B: .*parameters +6981701632 .*optimizer state .*does NOT fit in 80 GiB")
add_test(NAME cli_plan_json COMMAND agpt plan --model.flavor small --optimizer.name Muon --json
  --device-memory-gib 1)
set_tests_properties(cli_plan_json PROPERTIES
  PASS_REGULAR_EXPRESSION "\"fits\": true.*\"optimizer\": \"Muon\"")
add_test(NAME cli_plan_tensor_parallel COMMAND agpt plan --model.flavor debugmodel
  --parallelism.tensor_parallel_degree 2 --activation_checkpoint.mode full --json)
set_tests_properties(cli_plan_tensor_parallel PROPERTIES
  PASS_REGULAR_EXPRESSION "\"activation_checkpoint\": \"full\".*\"tensor_parallel_degree\": 2")
add_test(NAME cli_plan_tensor_parallel_refused COMMAND agpt plan --model.flavor small
  --parallelism.tensor_parallel_degree 4)
set_tests_properties(cli_plan_tensor_parallel_refused PROPERTIES
  PASS_REGULAR_EXPRESSION "tensor_parallel_degree = 4 does not divide the model.s n_heads 6")
# cuda jobs: one GPU's rows and the verdict (no device needed to plan).
add_test(NAME cli_plan_cuda_fits COMMAND agpt plan --model.name gpt2 --model.flavor 124M
  --vocab-size 50257 --training.device cuda --training.local_batch_size 32 --training.seq_len 1024
  --device-memory-gib 80)
set_tests_properties(cli_plan_cuda_fits PROPERTIES
  PASS_REGULAR_EXPRESSION "gpt2/124M: .* vocab 50257 .*memory per GPU \\(bf16 params \\+ fp32 master, cuda trainer\\).*bf16 copy of the parameters.*fits in 80 GiB")
add_test(NAME cli_plan_cuda_does_not_fit COMMAND agpt plan --model.flavor llama124m
  --training.device cuda --training.local_batch_size 32 --training.seq_len 1024
  --device-memory-gib 4 --json)
set_tests_properties(cli_plan_cuda_does_not_fit PROPERTIES
  PASS_REGULAR_EXPRESSION "\"device\": \"cuda\".*\"fits\": false")
add_test(NAME cli_plan_cuda_tensor_parallel COMMAND agpt plan --model.flavor 8B --vocab-size 128256
  --training.device cuda --training.local_batch_size 1 --training.seq_len 8192
  --parallelism.tensor_parallel_degree 8 --device-memory-gib 80)
set_tests_properties(cli_plan_cuda_tensor_parallel PROPERTIES
  PASS_REGULAR_EXPRESSION "tensor parallel 8 \\(1004015616 parameters per rank\\).*memory per GPU.*fp32 staging of the TP all-reduces.*fits in 80 GiB")
