"""Checks agpt's MLA + MoE model against the independent PyTorch twin in moe_torch.py.

Usage: /usr/bin/python3 tests/torch_ref/test_moe_vs_torch.py path/to/agpt_model_dump

For each configuration agpt_model_dump writes agpt's weights (expert biases drawn away from 0
where asked, so that the bias must steer the choice), inputs, logits, the experts every token
chose, loss, every gradient and a few AdamW steps' losses; the same weights go into the torch
model in float64 (the reference) and float32.

Tolerances as tests/torch_ref/test_model_vs_torch.py: max|agpt - torch64| / max|torch64| <= 1e-4
per tensor, losses to 1e-4 relative. The routes must be the same sets of experts, the expert
biases' gradients exactly zero (they are not trained), and for the configs with biases, the
routes torch chooses without them must differ (the bias is seen to act).

Exit status: 0 pass, 1 mismatch, 77 torch not importable (ctest reports that as skipped).
"""

import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"SKIP: {e} (run with /usr/bin/python3, which has Debian's python3-torch)")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import agpt_torch as at  # noqa: E402
import moe_torch as mt  # noqa: E402

TOL = 1e-4
STEPS = 4
LR = 1e-3

CONFIGS = [
    # name, flavor, vocab, B, T, extra agpt_model_dump flags
    # q LoRA, YaRN, sigmoid router with normalisation and scale 2.5, biased choice.
    ("moe_tiny", "moe_tiny", 300, 2, 24,
     ["--norm-noise", "0.3", "--expert-bias-noise", "0.3"]),
    # No q LoRA, no YaRN, softmax router, unbiased.
    ("moe_debug", "moe_debug", 512, 2, 32, []),
    # The sequence-level balance loss (gradients include it; losses compared are cross-entropy).
    ("moe_tiny-aux", "moe_tiny", 300, 2, 24, ["--expert-bias-noise", "0.3",
                                              "--aux-loss-alpha", "0.1"]),
    ("moe_debug-aux", "moe_debug", 512, 2, 32, ["--aux-loss-alpha", "0.05"]),
    ("moe_debug_dense", "moe_debug_dense", 512, 2, 32, ["--norm-noise", "0.3"]),
    # design.md's table flavor at its exact dimensions (vocabulary cut for speed), YaRN on.
    ("moe_debugmodel", "moe_debugmodel", 512, 1, 24, ["--expert-bias-noise", "0.1"]),
]


def rel_err(a, ref):
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    scale = np.max(np.abs(ref))
    diff = np.max(np.abs(a - ref))
    return float(diff / scale) if scale > 0 else float(diff)


def make(args, arrays, dtype):
    m = mt.MoeTorch(args, dtype)
    m.load(arrays)
    return m


def forward_backward(args, arrays, dtype):
    m = make(args, arrays, dtype)
    tokens = torch.from_numpy(arrays["tokens"].astype(np.int64))
    targets = torch.from_numpy(arrays["targets"].astype(np.int64))
    loss = m.loss(tokens, targets)
    ce = float(m.last_ce)
    routes = {i: c.numpy() for i, c in m.last_chosen.items()}
    loss.backward()
    with torch.no_grad():
        logits = m(tokens)
    grads = {n: p.grad.detach().numpy().astype(np.float64) for n, p in m.named()}
    return logits.numpy().astype(np.float64), ce, grads, routes


def train(args, arrays, dtype):
    m = make(args, arrays, dtype)
    opt = torch.optim.AdamW(m.parameters(), lr=LR, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    tt = torch.from_numpy(arrays["train_tokens"].astype(np.int64))
    tg = torch.from_numpy(arrays["train_targets"].astype(np.int64))
    losses = []
    for s in range(tt.shape[0]):
        opt.zero_grad(set_to_none=True)
        loss = m.loss(tt[s], tg[s])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        losses.append(float(m.last_ce))
    return losses


def run_config(dump, name, flavor, vocab, B, T, flags, tmp):
    path = os.path.join(tmp, f"{name}.safetensors")
    cmd = [dump, "--flavor", flavor, "--vocab", str(vocab), "--batch", str(B), "--seq", str(T),
           "--seed", "1234", "--steps", str(STEPS), "--lr", repr(LR), "--out", path] + flags
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL {name}: {' '.join(cmd)} exited {r.returncode}\n{r.stdout}{r.stderr}")
        return False
    arrays, meta = at.load_safetensors(path)
    args = mt.MoeArgs(meta)
    shapes = mt.param_shapes(args)
    ok = True
    for n, s in shapes.items():
        got = arrays.get("param." + n)
        if got is None or tuple(got.shape) != tuple(s):
            print(f"FAIL {name}: param.{n} is {None if got is None else got.shape}, want {s}")
            ok = False
    extra = sorted(k for k in arrays if k.startswith("param.") and k[6:] not in shapes)
    if extra:
        print(f"FAIL {name}: unexpected parameters {extra}")
        ok = False
    if not ok:
        return False

    logits64, loss64, grads64, routes64 = forward_backward(args, arrays, torch.float64)
    logits32, loss32, grads32, _ = forward_backward(args, arrays, torch.float32)
    print(f"\n== {name}: {args.describe()}; vocab {vocab}, B {B}, T {T}")
    print(f"   err = max|x - torch64| / max|torch64|; tolerance for agpt {TOL:g}")
    print(f"   {'tensor':<44} {'agpt err':>10} {'torch32 err':>12}  status")
    rows = [("logits", arrays["logits"], logits64, logits32),
            ("loss", arrays["loss"][0], loss64, loss32)]
    rows += [("grad." + n, arrays["grad." + n], grads64[n], grads32[n])
             for n in shapes if not n.endswith("expert_bias")]
    for label, a, ref, t32 in rows:
        e, e32 = rel_err(a, ref), rel_err(t32, ref)
        good = e <= TOL and bool(np.all(np.isfinite(a)))
        ok &= good
        print(f"   {label:<44} {e:10.2e} {e32:12.2e}  {'ok' if good else 'FAIL'}")
    for n in shapes:
        if n.endswith("expert_bias"):
            g = arrays["grad." + n]
            good = bool(np.all(g == 0))
            ok &= good
            print(f"   grad.{n:<39} {'all zero' if good else 'NONZERO'}  "
                  f"{'ok' if good else 'FAIL'}")
    biased = any(np.any(arrays["param." + n] != 0) for n in shapes if n.endswith("expert_bias"))
    for i, ref in routes64.items():
        got = arrays[f"route.layers.{i}"].reshape(ref.shape)
        same = bool(np.all(np.sort(got, axis=-1) == np.sort(ref, axis=-1)))
        ok &= same
        counts = np.bincount(got.reshape(-1), minlength=args.n_experts)
        print(f"   route layer {i}: {'same experts' if same else 'DIFFERENT experts'} for all "
              f"{ref.shape[0]} tokens; load {counts.tolist()}  {'ok' if same else 'FAIL'}")
    if biased:  # without the bias torch must choose differently somewhere: the bias acts
        unbiased = dict(arrays)
        for n in shapes:
            if n.endswith("expert_bias"):
                unbiased["param." + n] = np.zeros_like(arrays["param." + n])
        m = make(args, unbiased, torch.float64)
        with torch.no_grad():
            m(torch.from_numpy(arrays["tokens"].astype(np.int64)))
        changed = sum(int(np.sum(np.any(np.sort(m.last_chosen[i].numpy(), -1) !=
                                        np.sort(routes64[i], -1), axis=-1)))
                      for i in routes64)
        good = changed > 0
        ok &= good
        print(f"   expert bias effect: {changed} token routes change without it  "
              f"{'ok' if good else 'FAIL: the test cannot tell'}")

    if args.aux_loss_alpha > 0:  # without the balance loss the router gradients must differ
        off = mt.MoeArgs({**meta, "aux_loss_alpha": "0"})
        _, _, grads_off, _ = forward_backward(off, arrays, torch.float64)
        effect = max(rel_err(grads_off[n], grads64[n]) for n in shapes if "router" in n)
        good = effect > 100 * TOL
        ok &= good
        print(f"   balance loss effect on router gradients {effect:.2e} (must exceed "
              f"{100 * TOL:g})  {'ok' if good else 'FAIL: the test cannot tell'}")

    losses64 = train(args, arrays, torch.float64)
    print(f"   AdamW (lr {LR:g}, wd 0.1, clip 1.0): {'step':>4} {'agpt':>12} {'torch64':>12} "
          f"{'err':>9}")
    for s, ref in enumerate(losses64):
        e = abs(arrays["train_losses"][s] - ref) / abs(ref)
        good = e <= TOL
        ok &= good
        print(f"   {'':<34} {s + 1:>4} {arrays['train_losses'][s]:12.8f} {ref:12.8f} "
              f"{e:9.2e}  {'ok' if good else 'FAIL'}")
    print(f"   {name}: {'PASS' if ok else 'FAIL'}")
    return ok


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    ok = True
    with tempfile.TemporaryDirectory(prefix="agpt_moe_ref_") as tmp:
        for cfg in CONFIGS:
            ok &= run_config(sys.argv[1], *cfg, tmp)
    print("\nRESULT:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
