#pragma once
// NCCL behind the Communicator interface (dist/communicator.h): the same collectives as MPI, on
// DEVICE buffers, one process per GPU. Bootstrapped over a host communicator (rank 0's
// ncclUniqueId is broadcast through it), which also carries what is host data by nature
// (gather_bytes). Compiled only with the CUDA backend (AGPT_HAVE_CUDA); libnccl.so.2 is opened
// at first use (kernels/cuda/nccl_loader.h).
//
// Ordering. The communicator serves one compute stream (the model's):
//   - all_reduce, reduce_scatter, all_gather, all_to_all(_v), broadcast and barrier are
//     blocking, as MPI's: queued on the compute stream after its work, and the stream is
//     synchronised before they return;
//   - start_all_reduce (the gradient buckets) records an event on the compute stream, makes the
//     communication stream wait for it and queues the sum there: the host never blocks.
//     test() asks whether it has finished; wait() makes the compute stream wait for the sum's
//     event (the host does not block either), so what is queued after it sees the result.
// Intended usage (one rank per GPU; the device chosen before any allocation):
//   select_local_cuda_device(world.rank());
//   TransformerGpu model(...);
//   auto nccl = make_nccl_communicator(world, model.stream());
//   PendingReduce p = nccl->start_all_reduce(model.grads_device() + begin, n);
//   nccl->wait(p);
#include <memory>
#include <string>

#include "dist/communicator.h"

#if defined(AGPT_HAVE_CUDA)
#include <cuda_runtime.h>
#endif

namespace agpt {

// This process's rank among the ranks of its node from the launcher's environment
// (OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID, PALS_LOCAL_RANKID, MPI_LOCALRANKID; the first
// set), else `fallback` (the world rank: one node).
int local_rank_from_env(int fallback);

// The device of a local rank: local_rank modulo the device count (each rank of a node its own
// GPU when there are as many GPUs as ranks). Throws Error when there is no device.
int device_for_local_rank(int local_rank, int device_count);

#if defined(AGPT_HAVE_CUDA)

// cudaSetDevice(device_for_local_rank(local_rank_from_env(world_rank), device count)); returns
// the device. Call before any CUDA allocation of this process.
int select_local_cuda_device(int world_rank);

// NCCL over the ranks of `host` (collective over host: every rank calls it), serving
// `compute_stream` (the legacy default stream when null) on the current device. `host` must
// outlive the result.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& host,
                                                     cudaStream_t compute_stream);

#endif

}  // namespace agpt
