#pragma once
// Muon with torch.optim.Muon's semantics (PyTorch ≥ 2.9, torch/optim/_muon.py), for the 2-D
// hidden weights; every other parameter goes to an AdamW with the [optimizer.adamw] keys.
//
// Per hidden matrix W (A × B) and step:
//   buf = lerp(buf, g, 1 − momentum)                      (EMA momentum, buf₀ = 0)
//   u   = nesterov ? lerp(g, buf, momentum) : buf
//   O   = NewtonSchulz(u)                                 (kernels/cpu/newton_schulz.h)
//   W  *= 1 − lr·weight_decay
//   W  -= lr·ratio · O,  ratio = √max(1, A/B)   (adjust_lr_fn = original)
//                              = 0.2·√max(A, B) (adjust_lr_fn = match_rms_adamw)
// torch runs Newton–Schulz in bf16; agpt runs it in fp32 by default (ns_precision = fp32), and
// bf16 emulates torch's roundings; fp64 is there for checking.
#include "kernels/cpu/newton_schulz.h"
#include "optim/optimizer.h"

namespace agpt {

OptimizerInfo muon_info();

struct MuonConfig {
    enum class NsPrecision { fp32, bf16, fp64 };
    double lr = 0.0, weight_decay = 0.0, momentum = 0.0, eps = 0.0;
    bool nesterov = true;
    int ns_steps = 0;
    bool match_rms_adamw = false;  // adjust_lr_fn = match_rms_adamw (else original)
    cpu::NsCoefficients coef;
    NsPrecision ns_precision = NsPrecision::fp32;
};
// The keys of muon_info() from checked hyper-parameters, validated as torch.optim.Muon does.
MuonConfig muon_config_from(const Hyper& h);

}  // namespace agpt
