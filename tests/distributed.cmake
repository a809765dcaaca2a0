# Multi-rank tests need OpenMPI's mpirun (scripts/setup.sh installs it).
find_program(AGPT_MPIRUN mpirun)
if(AGPT_MPIRUN AND MPI_CXX_FOUND)
  add_test(NAME distributed COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/distributed_test.sh $<TARGET_FILE:agpt>)
  set_tests_properties(distributed PROPERTIES TIMEOUT 900)
endif()
if(AGPT_MPIRUN AND MPI_CXX_FOUND)
  add_test(NAME communicator_mpi COMMAND ${AGPT_MPIRUN} --allow-run-as-root --oversubscribe -np 3
    $<TARGET_FILE:agpt_tests> --gtest_filter=WorldCommunicator.*)
  set_tests_properties(communicator_mpi PROPERTIES TIMEOUT 120)
endif()
