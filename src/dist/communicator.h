#pragma once
// Collective communication between the ranks of a job, behind one small interface so that the
// trainer never sees the transport: MPI on CPUs now (OpenMPI from Debian), NCCL on GPUs later
// (an implementation beside src/kernels/cuda), and a single-process one that makes every
// collective the identity.
//
// Intended usage:
//   Communicator& comm = world_communicator();       // MPI under mpirun/srun, else single
//   comm.all_reduce(grads.data(), grads.size(), ReduceOp::Sum);
//   if (comm.rank() == 0) write_run_files();
//
// Every collective must be called by every rank in the same order with the same counts.
// Reductions are deterministic for a fixed world size and message size (MPI picks the algorithm
// from both), which the bit-identical resume of a multi-rank run relies on.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace agpt {

enum class ReduceOp { Sum, Avg, Min, Max };

// An all_reduce in flight (Communicator::start_all_reduce): the backend's ticket, 0 once complete.
struct PendingReduce {
    std::int64_t ticket = 0;
    bool done() const { return ticket == 0; }
};

class Communicator {
  public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    // "single" or "mpi" (later "nccl").
    virtual std::string backend() const = 0;

    // In place over `n` values on every rank.
    virtual void all_reduce(float* data, std::size_t n, ReduceOp op) = 0;
    virtual void all_reduce(double* data, std::size_t n, ReduceOp op) = 0;
    // in: size()·count values; out: this rank's `count` values of the reduction, the rank-th
    // block (ZeRO-1's gradient shard).
    virtual void reduce_scatter(const float* in, float* out, std::size_t count, ReduceOp op) = 0;
    // in: `count` values; out: size()·count values, rank r's block at r·count.
    virtual void all_gather(const float* in, float* out, std::size_t count) = 0;
    // in: size()·count values, block r for rank r; out: size()·count values, block r from rank r
    // (expert parallelism's token dispatch and combine).
    virtual void all_to_all(const float* in, float* out, std::size_t count) = 0;
    virtual void all_to_all(const int* in, int* out, std::size_t count) = 0;
    // Blocks of different sizes: in holds send_counts[b] values for rank b, out receives
    // recv_counts[b] values from rank b, both packed in rank order. recv_counts are the senders'
    // send_counts for this rank (an all_to_all of the counts first): expert parallelism's
    // dispatch and combine of token rows.
    virtual void all_to_all_v(const float* in, const int* send_counts, float* out,
                              const int* recv_counts) = 0;
    virtual void broadcast(void* data, std::size_t bytes, int root) = 0;
    // Every rank's bytes to `root`, in rank order (its own included); the other ranks get {}.
    // The default goes through broadcast; MPI sends point to point.
    virtual std::vector<std::string> gather_bytes(const std::string& mine, int root);
    virtual void barrier() = 0;
    // Collective over this communicator: ranks passing the same color form one sub-group,
    // ordered by key (then by rank here). The mesh's DP and TP groups (docs/distributed.md).
    // A sub-group must be destroyed before the communicator it came from.
    virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
    // Ends every rank of the job now (a rank that cannot go on must not leave the others
    // waiting in a collective).
    [[noreturn]] virtual void abort(int exit_code) = 0;

    // Non-blocking all_reduce (sum only: the gradient buckets): `data` must stay untouched until
    // wait() returns. test() makes progress and says whether it is done; wait() blocks until it
    // is. A handle is used once: after wait() (or a test() that returned true) it is spent.
    // The default completes at once, through all_reduce.
    virtual PendingReduce start_all_reduce(float* data, std::size_t n);
    virtual bool test(PendingReduce& pending);
    virtual void wait(PendingReduce& pending);

    // Convenience over all_reduce for one value.
    double all_reduce_value(double v, ReduceOp op) {
        all_reduce(&v, 1, op);
        return v;
    }
};

// The identity communicator of a one-rank job.
std::unique_ptr<Communicator> make_single_process_communicator();

// True when this process was started by an MPI launcher (mpirun, mpiexec, srun with PMI/PMIx):
// the launcher's rank variables are in the environment.
bool launched_by_mpi();

// Whether this build has the MPI backend.
bool mpi_available();

// The communicator of all the job's ranks, created on first use: MPI when launched_by_mpi(),
// else single-process. MPI is finalized at exit. Throws Error when launched by MPI but the build
// has no MPI backend.
Communicator& world_communicator();

// The world communicator if one exists already, else nullptr (for error paths that must not
// start MPI).
Communicator* existing_world_communicator();

// Prints "agpt: error: <what>" to stderr ("agpt: error (rank r of N): <what>" in a multi-rank
// job) and, in a multi-rank job, aborts every rank: the others would wait in their next
// collective forever.
void report_fatal_error(const char* what);

}  // namespace agpt
