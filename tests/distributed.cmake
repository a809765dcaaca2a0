# Multi-rank tests need OpenMPI's mpirun (scripts/setup.sh installs it).
find_program(AGPT_MPIRUN mpirun)
if(AGPT_MPIRUN AND MPI_CXX_FOUND)
  add_test(NAME distributed COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/distributed_test.sh $<TARGET_FILE:agpt>)
  set_tests_properties(distributed PROPERTIES TIMEOUT 900)
endif()
if(AGPT_MPIRUN AND MPI_CXX_FOUND)
  add_test(NAME distributed_tp COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/distributed_tp_test.sh $<TARGET_FILE:agpt>)
  set_tests_properties(distributed_tp PROPERTIES TIMEOUT 900)
endif()
if(AGPT_MPIRUN AND MPI_CXX_FOUND)
  add_test(NAME communicator_mpi COMMAND ${AGPT_MPIRUN} --allow-run-as-root --oversubscribe -np 3
    $<TARGET_FILE:agpt_tests> --gtest_filter=WorldCommunicator.*)
  set_tests_properties(communicator_mpi PROPERTIES TIMEOUT 120)
endif()
if(AGPT_MPIRUN AND MPI_CXX_FOUND)
  add_test(NAME launch_cli COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/launch_cli_test.sh $<TARGET_FILE:agpt>)
  set_tests_properties(launch_cli PROPERTIES TIMEOUT 300)
endif()
if(AGPT_MPIRUN AND MPI_CXX_FOUND)
  # The sharded model and the vocabulary-parallel head against one rank, over 2 and 3 ranks
  # (3: uneven vocabulary ranges).
  foreach(ranks 2 3)
    add_test(NAME tensor_parallel_mpi_${ranks} COMMAND ${AGPT_MPIRUN} --allow-run-as-root
      --oversubscribe --bind-to none -np ${ranks} -x OMP_NUM_THREADS=1 $<TARGET_FILE:agpt_tests>
      --gtest_filter=WorldTensorParallel.*:WorldCommunicator.Split*)
    set_tests_properties(tensor_parallel_mpi_${ranks} PROPERTIES TIMEOUT 120)
  endforeach()
endif()
