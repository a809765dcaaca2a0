# `agpt models`: the table and the JSON list (the listing itself is tested in
# tests/model_switches_test.cpp; these check the command's wiring).
add_test(NAME cli_models_table COMMAND agpt models)
set_tests_properties(cli_models_table PROPERTIES
  PASS_REGULAR_EXPRESSION "debugmodel_kitchen_sink +21\\.9M +21\\.9M .*qk_norm, attn_softcap 30, ffn relu2")
add_test(NAME cli_models_json COMMAND agpt models --json)
set_tests_properties(cli_models_json PROPERTIES
  PASS_REGULAR_EXPRESSION "{\"name\":\"agpt\",\"flavor\":\"8B\",\"params\":8030261248,\"active_params\":8030261248}")
# MoE flavors: total and active parameters differ (docs/moe.md).
add_test(NAME cli_models_json_moe COMMAND agpt models --json)
set_tests_properties(cli_models_json_moe PROPERTIES
  PASS_REGULAR_EXPRESSION "{\"name\":\"agpt\",\"flavor\":\"moe_16B\",\"params\":16336155776,\"active_params\":3290821760}")
