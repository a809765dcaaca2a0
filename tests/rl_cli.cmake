# `agpt rl tasks` lists the built-in tasks (the registry itself is tested in
# tests/rl_task_test.cpp; these check the commands' wiring).
add_test(NAME cli_rl_tasks COMMAND agpt rl tasks)
set_tests_properties(cli_rl_tasks PROPERTIES
  PASS_REGULAR_EXPRESSION "countdown +difficulty +3 \\(1-6\\) +reach a target.*multiply.*sum_of_digits.*word_sort")
add_test(NAME cli_rl_unknown_task COMMAND agpt rl --task nope --init x)
set_tests_properties(cli_rl_unknown_task PROPERTIES
  PASS_REGULAR_EXPRESSION "agpt: error: task.name = 'nope': rl: unknown task 'nope'; known: countdown")
add_test(NAME cli_sft_unknown_key COMMAND agpt sft --task multiply --steps 1 --rl.grup_size 3)
set_tests_properties(cli_sft_unknown_key PROPERTIES
  PASS_REGULAR_EXPRESSION "unknown key 'rl.grup_size' \\(did you mean 'rl.group_size'\\?\\)")
