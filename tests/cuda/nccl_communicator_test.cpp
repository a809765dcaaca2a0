// NcclCommunicator's logic that needs no NCCL (in the emulator too): the device a rank picks
// from its launcher's local rank, and the error naming libnccl when it cannot be loaded.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "../scoped_env.h"
#include "core/error.h"
#include "dist/nccl_communicator.h"
#include "kernels/cuda/nccl_loader.h"

namespace agpt {
namespace {

// The launchers' local-rank variables unset for one scope, restored after.
struct LocalRankEnv {
    ScopedEnv ompi{"OMPI_COMM_WORLD_LOCAL_RANK", nullptr}, slurm{"SLURM_LOCALID", nullptr},
        pals{"PALS_LOCAL_RANKID", nullptr}, mpich{"MPI_LOCALRANKID", nullptr};
};

TEST(NcclCommunicator, DeviceIsTheLocalRankModuloTheDeviceCount) {
    const LocalRankEnv env;
    // No launcher variable: the world rank (one node).
    EXPECT_EQ(local_rank_from_env(5), 5);
    setenv("SLURM_LOCALID", "3", 1);
    EXPECT_EQ(local_rank_from_env(9), 3);
    // OpenMPI's variable first.
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
    EXPECT_EQ(local_rank_from_env(9), 1);
    unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
    unsetenv("SLURM_LOCALID");
    setenv("PALS_LOCAL_RANKID", "6", 1);
    EXPECT_EQ(local_rank_from_env(0), 6);

    EXPECT_EQ(device_for_local_rank(0, 4), 0);
    EXPECT_EQ(device_for_local_rank(3, 4), 3);
    EXPECT_EQ(device_for_local_rank(6, 4), 2);  // more ranks than GPUs on the node: shared
    EXPECT_EQ(device_for_local_rank(2, 1), 0);
}

TEST(NcclCommunicator, RefusesABadLocalRankOrNoDevice) {
    const LocalRankEnv env;
    setenv("SLURM_LOCALID", "two", 1);
    try {
        local_rank_from_env(0);
        ADD_FAILURE() << "accepted SLURM_LOCALID = two";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("SLURM_LOCALID = two"), std::string::npos) << e.what();
    }
    EXPECT_THROW(device_for_local_rank(0, 0), Error);
}

TEST(NcclLoader, AMissingLibraryIsNamed) {
    try {
        cuda::load_nccl("libnccl-agpt-missing.so.2");
        ADD_FAILURE() << "loaded a library that does not exist";
    } catch (const Error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("cannot load libnccl-agpt-missing.so.2"), std::string::npos) << what;
        EXPECT_NE(what.find("NCCL"), std::string::npos) << what;
    }
    EXPECT_EQ(std::string(cuda::kNcclLibrary), "libnccl.so." + std::to_string(NCCL_MAJOR));
}

}  // namespace
}  // namespace agpt
