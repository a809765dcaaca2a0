#pragma once
// The MPI implementation of Communicator (MPI_COMM_WORLD). Built when CMake finds MPI
// (AGPT_HAVE_MPI); without it make_mpi_world_communicator throws.
#include <memory>

#include "dist/communicator.h"

namespace agpt {

// Initialises MPI (funneled threading: only the main thread calls MPI; OpenMP threads compute)
// and returns MPI_COMM_WORLD. MPI_Finalize runs when the communicator is destroyed.
std::unique_ptr<Communicator> make_mpi_world_communicator();

}  // namespace agpt
