#pragma once
// The optimizers on one CUDA device, over any GpuModel (model/gpu/gpu_model.h): each is its CPU
// optimizer's algorithm (optim/*.cpp) with the same [optimizer] keys, defaults and checks, the
// same routing (Muon sends embeddings, the head, norms and biases to an inner AdamW) and the
// same state tensors — names, shapes, order — so a checkpoint written on cuda resumes on cpu and
// back.
//
// Each device optimizer holds the CPU optimizer built over the same parameters as its host
// mirror: that object validates the hyper-parameters, names and lays out the state and keeps the
// scalars (step counters); its fp32 tensors are host copies of the device state, filled by
// state_tensors() (one download) and uploaded again by the next step() (a checkpoint load writes
// there). The state itself lives on the device in fp32, one buffer in the mirror's order, so
// the slices of one kind (every exp_avg of a group) are contiguous and an element-wise update
// is one kernel per run of adjacent parameters. Updates write the model's bf16 copy in the same
// pass; nothing but the timing synchronises.
//
// Muon's Newton–Schulz runs through cuBLASLt GEMMs (kernels/cuda/newton_schulz.h): bf16 GEMMs
// when the model computes in bf16 or optimizer.ns_precision = bf16, fp32 otherwise.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "optim/optimizer.h"

namespace agpt {

// Fails with one message naming the key when spec cannot run on the device: an optimizer
// without a device version (a registered one) or optimizer.ns_precision = fp64. Needs no device.
void check_cuda_optimizer(const OptimizerSpec& spec);

}  // namespace agpt

#if defined(AGPT_HAVE_CUDA)
#include "model/gpu/gpu_model.h"

namespace agpt {

// spec's optimizer stepping model's device parameters from its device gradients.
// before_update runs at the start of every step() (the caller's chance to make the device
// parameters current). Fails as check_cuda_optimizer does.
std::unique_ptr<Optimizer> make_device_optimizer(const OptimizerSpec& spec, GpuModel& model,
                                                 std::function<void()> before_update = {});
// The same over `views` only, a subset of model's (ZeRO-1's owned parameters, dist/zero.h): its
// state and host mirror are those of the CPU optimizer over the same views (names, layout).
std::unique_ptr<Optimizer> make_device_optimizer(const OptimizerSpec& spec, GpuModel& model,
                                                 const std::vector<ParamView>& views,
                                                 std::function<void()> before_update = {});

}  // namespace agpt
#endif
