# MoE under data parallelism (tests/distributed_moe_test.sh), with OpenMPI's mpirun.
find_program(AGPT_MPIRUN mpirun)
if(AGPT_MPIRUN AND MPI_CXX_FOUND)
  add_test(NAME distributed_moe COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/distributed_moe_test.sh $<TARGET_FILE:agpt>)
  set_tests_properties(distributed_moe PROPERTIES TIMEOUT 900)
endif()
