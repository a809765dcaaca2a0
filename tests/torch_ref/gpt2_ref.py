"""Checks agpt's GPT-2 (src/model/gpt2.*) and `agpt import --llmc` against an independent PyTorch
GPT-2 written from the architecture description (OpenAI GPT-2 as nanoGPT and llm.c train it):

    x = wte[tokens] + wpe[0..T)
    per layer:  x = x + attn.c_proj(causal_mha(attn.c_attn(ln_1(x))))
                x = x + mlp.c_proj(gelu_tanh(mlp.c_fc(ln_2(x))))
    logits = ln_f(x) @ wte[:V]^T                          (tied head; wte may have padding rows)
    LayerNorm(x) = (x - mean) / sqrt(var + 1e-5) * w + b  (biased variance)
    gelu_tanh(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    c_attn's 3C outputs are q | k | v, each split into H heads of C/H; scores q.k/sqrt(C/H).
Matrices are (out, in) as nn.Linear stores them: y = x @ W^T + b.

Usage: /usr/bin/python3 tests/torch_ref/gpt2_ref.py path/to/agpt path/to/agpt_gpt2_dump

1. Model: agpt_gpt2_dump initialises a Gpt2, perturbs every parameter (biases and LayerNorm
   weights away from 0 and 1; wte's padding rows non-zero, which must change nothing) and
   writes its weights, logits, loss and every gradient; the same weights go into the reference
   in float64. Per tensor err = max|agpt - torch64| / max|torch64| <= 1e-4 (the tolerance of
   tests/torch_ref/test_model_vs_torch.py; agpt computes in fp32, a correct fp32 implementation
   lands near 1e-6; the torch float32 column shows what fp32 rounding alone costs).
2. llm.c import: random weights are written in llm.c's checkpoint format (a 256-int32 header:
   20240326, version 3, max_seq_len, vocab_size, num_layers, num_heads, channels,
   padded_vocab_size; then fp32 wte (Vp,C), wpe, ln1w, ln1b, qkvw, qkvb, attprojw, attprojb,
   ln2w, ln2b, fcw, fcb, fcprojw, fcprojb stacked over layers, lnfw, lnfb) by this script,
   converted with `agpt import --llmc`, and the imported model's logits compared with the
   reference's on those weights (same tolerance); every imported tensor must equal the
   written one bit for bit.
3. Bad headers: `agpt import --llmc` on a file with a wrong magic, a bf16 version and a
   truncated file must fail with one line naming the file and leave no output folder.

Exit status: 0 pass, 1 mismatch, 77 torch not importable (ctest reports that as skipped).
"""

import math
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"SKIP: {e} (run with /usr/bin/python3, which has Debian's python3-torch)")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agpt_torch import load_safetensors, save_safetensors  # noqa: E402

TOL = 1e-4
LLMC_MAGIC, LLMC_VERSION = 20240326, 3

# name, dump arguments (flavor gpt2_tiny: 2 layers, dim 64, 4 heads, vocab 512, context 128)
MODEL_CONFIGS = [
    ("tiny-padded-vocab", ["--vocab", "300", "--context", "40", "--batch", "2", "--seq", "16"]),
    ("tiny-full-context", ["--batch", "1", "--seq", "128"]),
    ("3-layers-6-heads", ["--dim", "96", "--layers", "3", "--heads", "6", "--vocab", "1000",
                          "--context", "80", "--batch", "3", "--seq", "70"]),
]


class Cfg:
    def __init__(self, dim, n_layers, n_heads, vocab, padded_vocab, max_seq_len, norm_eps=1e-5):
        assert dim % n_heads == 0 and padded_vocab >= vocab
        self.dim, self.n_layers, self.n_heads = dim, n_layers, n_heads
        self.vocab, self.padded_vocab, self.max_seq_len = vocab, padded_vocab, max_seq_len
        self.norm_eps = norm_eps

    @staticmethod
    def from_metadata(m):
        return Cfg(int(m["dim"]), int(m["n_layers"]), int(m["n_heads"]), int(m["vocab"]),
                   int(m["padded_vocab"]), int(m["max_seq_len"]), float(m["norm_eps"]))


def param_shapes(c):
    """Hugging Face GPT2Model names -> shapes with (out, in) matrices and the padded wte."""
    C = c.dim
    s = {"wte.weight": (c.padded_vocab, C), "wpe.weight": (c.max_seq_len, C)}
    for i in range(c.n_layers):
        p = f"h.{i}."
        s[p + "ln_1.weight"] = (C,)
        s[p + "ln_1.bias"] = (C,)
        s[p + "attn.c_attn.weight"] = (3 * C, C)
        s[p + "attn.c_attn.bias"] = (3 * C,)
        s[p + "attn.c_proj.weight"] = (C, C)
        s[p + "attn.c_proj.bias"] = (C,)
        s[p + "ln_2.weight"] = (C,)
        s[p + "ln_2.bias"] = (C,)
        s[p + "mlp.c_fc.weight"] = (4 * C, C)
        s[p + "mlp.c_fc.bias"] = (4 * C,)
        s[p + "mlp.c_proj.weight"] = (C, 4 * C)
        s[p + "mlp.c_proj.bias"] = (C,)
    s["ln_f.weight"] = (C,)
    s["ln_f.bias"] = (C,)
    return s


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


class Gpt2Ref:
    def __init__(self, cfg, weights, dtype):
        self.c = cfg
        self.p = {n: torch.tensor(np.asarray(weights[n], dtype=np.float64), dtype=dtype,
                                  requires_grad=True) for n in param_shapes(cfg)}

    def logits(self, tokens):
        c, P = self.c, self.p
        B, T = tokens.shape
        C, H = c.dim, c.n_heads
        hd = C // H
        x = P["wte.weight"][tokens] + P["wpe.weight"][:T]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        for i in range(c.n_layers):
            q = f"h.{i}."
            y = layer_norm(x, P[q + "ln_1.weight"], P[q + "ln_1.bias"], c.norm_eps)
            qkv = y @ P[q + "attn.c_attn.weight"].T + P[q + "attn.c_attn.bias"]
            qh, kh, vh = (t.reshape(B, T, H, hd).transpose(1, 2) for t in qkv.split(C, dim=-1))
            scores = (qh @ kh.transpose(-1, -2)) / math.sqrt(hd)
            scores = scores.masked_fill(~causal, float("-inf"))
            a = (torch.softmax(scores, dim=-1) @ vh).transpose(1, 2).reshape(B, T, C)
            x = x + a @ P[q + "attn.c_proj.weight"].T + P[q + "attn.c_proj.bias"]
            y = layer_norm(x, P[q + "ln_2.weight"], P[q + "ln_2.bias"], c.norm_eps)
            h = gelu_tanh(y @ P[q + "mlp.c_fc.weight"].T + P[q + "mlp.c_fc.bias"])
            x = x + h @ P[q + "mlp.c_proj.weight"].T + P[q + "mlp.c_proj.bias"]
        x = layer_norm(x, P["ln_f.weight"], P["ln_f.bias"], c.norm_eps)
        return x @ P["wte.weight"][: c.vocab].T

    def loss(self, tokens, targets):
        lg = self.logits(tokens)
        return F.cross_entropy(lg.reshape(-1, self.c.vocab), targets.reshape(-1), ignore_index=-1)


def rel_err(a, ref):
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    scale = np.max(np.abs(ref))
    diff = np.max(np.abs(a - ref))
    return float(diff / scale) if scale > 0 else float(diff)


def reference(cfg, weights, tokens, targets, dtype):
    m = Gpt2Ref(cfg, weights, dtype)
    tk = torch.from_numpy(tokens.astype(np.int64))
    with torch.no_grad():
        logits = m.logits(tk)
    out = {"logits": logits.numpy().astype(np.float64)}
    if targets is not None:
        loss = m.loss(tk, torch.from_numpy(targets.astype(np.int64)))
        loss.backward()
        out["loss"] = float(loss)
        out["grads"] = {n: t.grad.numpy().astype(np.float64) for n, t in m.p.items()}
    return out


def check_reference_itself():
    """The hand-written pieces agree with torch's own ops (a check of the reference)."""
    x = torch.linspace(-8, 8, 2001, dtype=torch.float64)
    e1 = float((gelu_tanh(x) - F.gelu(x, approximate="tanh")).abs().max())
    xs = torch.randn(5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    w, b = torch.rand(7, dtype=torch.float64) + 0.5, torch.randn(7, dtype=torch.float64)
    e2 = float((layer_norm(xs, w, b, 1e-5) - F.layer_norm(xs, (7,), w, b, 1e-5)).abs().max())
    ok = e1 < 1e-12 and e2 < 1e-12
    print(f"reference self-check: gelu_tanh vs F.gelu(tanh) {e1:.1e}, layer_norm vs "
          f"F.layer_norm {e2:.1e} -> {'ok' if ok else 'FAIL'}")
    return ok


def run_model_config(dump, name, extra, tmp):
    path = os.path.join(tmp, f"{name}.safetensors")
    cmd = [dump, "model", "--seed", "1234", "--perturb", "0.1", "--out", path] + extra
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"FAIL {name}: {' '.join(cmd)} exited {r.returncode}\n{r.stdout}{r.stderr}")
        return False
    arrays, meta = load_safetensors(path)
    cfg = Cfg.from_metadata(meta)
    shapes = param_shapes(cfg)
    weights = {}
    ok = True
    for n, s in shapes.items():
        got = arrays.get("param." + n)
        if got is None or tuple(got.shape) != tuple(s):
            print(f"FAIL {name}: param.{n} is {None if got is None else got.shape}, want {s}")
            ok = False
        weights[n] = got
    extra_params = sorted(k for k in arrays if k.startswith("param.") and k[6:] not in shapes)
    if extra_params:
        print(f"FAIL {name}: unexpected parameters {extra_params}")
        ok = False
    if not ok:
        return False
    tokens, targets = arrays["tokens"], arrays["targets"]
    r64 = reference(cfg, weights, tokens, targets, torch.float64)
    r32 = reference(cfg, weights, tokens, targets, torch.float32)
    B, T = tokens.shape
    print(f"\n== {name}: dim {cfg.dim}, layers {cfg.n_layers}, heads {cfg.n_heads}, vocab "
          f"{cfg.vocab} (padded {cfg.padded_vocab}), context {cfg.max_seq_len}, B {B}, T {T}")
    print(f"   err = max|x - torch64| / max|torch64|; tolerance for agpt {TOL:g}")
    print(f"   {'tensor':<34} {'agpt err':>10} {'torch32 err':>12}  status")
    rows = [("logits", arrays["logits"], r64["logits"], r32["logits"]),
            ("last_logits", arrays["last_logits"], r64["logits"][0, -1], r32["logits"][0, -1]),
            ("loss", arrays["loss"][0], r64["loss"], r32["loss"]),
            ("forward_loss", arrays["forward_loss"][0], r64["loss"], r32["loss"])]
    rows += [("grad." + n, arrays["grad." + n], r64["grads"][n], r32["grads"][n]) for n in shapes]
    worst = 0.0
    for label, a, ref, t32 in rows:
        e, e32 = rel_err(a, ref), rel_err(t32, ref)
        good = e <= TOL and bool(np.all(np.isfinite(a)))
        worst = max(worst, e)
        ok &= good
        print(f"   {label:<34} {e:10.2e} {e32:12.2e}  {'ok' if good else 'FAIL'}")
    pad = arrays["grad.wte.weight"][cfg.vocab:]
    if pad.size and np.any(pad != 0):
        print("   FAIL: wte's padding rows received a gradient")
        ok = False
    print(f"   {name}: worst tensor error {worst:.2e} -> {'PASS' if ok else 'FAIL'}")
    return ok


# ------------------------------------------------------------------------------------------
# llm.c checkpoints, written from the format description

LLMC_ORDER = [  # (name in file order, stacked over layers)
    ("wte.weight", False), ("wpe.weight", False), ("ln_1.weight", True), ("ln_1.bias", True),
    ("attn.c_attn.weight", True), ("attn.c_attn.bias", True), ("attn.c_proj.weight", True),
    ("attn.c_proj.bias", True), ("ln_2.weight", True), ("ln_2.bias", True),
    ("mlp.c_fc.weight", True), ("mlp.c_fc.bias", True), ("mlp.c_proj.weight", True),
    ("mlp.c_proj.bias", True), ("ln_f.weight", False), ("ln_f.bias", False),
]


def write_llmc(path, cfg, weights, magic=LLMC_MAGIC, version=LLMC_VERSION):
    header = np.zeros(256, dtype="<i4")
    header[:8] = [magic, version, cfg.max_seq_len, cfg.vocab, cfg.n_layers, cfg.n_heads,
                  cfg.dim, cfg.padded_vocab]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for name, layered in LLMC_ORDER:
            if layered:
                stacked = np.stack([weights[f"h.{i}.{name}"] for i in range(cfg.n_layers)])
            else:
                stacked = weights[name]
            f.write(np.ascontiguousarray(stacked, dtype="<f4").tobytes())


def random_weights(cfg, seed):
    rng = np.random.default_rng(seed)
    w = {}
    for n, s in param_shapes(cfg).items():
        if n.endswith("ln_1.weight") or n.endswith("ln_2.weight") or n == "ln_f.weight":
            a = 1.0 + 0.1 * rng.standard_normal(s)
        elif n.endswith(".bias"):
            a = 0.05 * rng.standard_normal(s)
        else:
            a = 0.08 * rng.standard_normal(s)
        w[n] = a.astype(np.float32)
    # llm.c writes zeros into wte's padding rows; any value must be ignored.
    w["wte.weight"][cfg.vocab:] = 7.0
    return w


def check_llmc_import(agpt, dump, tmp):
    cfg = Cfg(dim=48, n_layers=2, n_heads=3, vocab=300, padded_vocab=384, max_seq_len=32)
    weights = random_weights(cfg, 99)
    src = os.path.join(tmp, "gpt2_test.bin")
    write_llmc(src, cfg, weights)
    out = os.path.join(tmp, "imported")
    r = subprocess.run([agpt, "import", "--llmc", src, "--out", out], capture_output=True,
                       text=True)
    print(f"\n== llm.c import: dim {cfg.dim}, layers {cfg.n_layers}, heads {cfg.n_heads}, vocab "
          f"{cfg.vocab} (padded {cfg.padded_vocab}), context {cfg.max_seq_len}")
    if r.returncode != 0:
        print(f"   FAIL: agpt import --llmc exited {r.returncode}\n{r.stdout}{r.stderr}")
        return False
    print("   " + r.stdout.strip().replace("\n", "\n   "))
    ok = True
    stored, meta = load_safetensors(os.path.join(out, "model.safetensors"))
    for n, a in weights.items():
        got = stored.get(n)
        if got is None or got.dtype != np.float32 or got.shape != a.shape or \
                got.tobytes() != a.tobytes():
            print(f"   FAIL: imported {n} differs from the llm.c file's")
            ok = False
    if sorted(stored) != sorted(weights):
        print(f"   FAIL: imported tensors {sorted(set(stored) ^ set(weights))} unexpected/missing")
        ok = False
    want_meta = {"agpt.model": "gpt2", "gpt2.dim": "48", "gpt2.n_layers": "2",
                 "gpt2.n_heads": "3", "gpt2.vocab_size": "300", "gpt2.padded_vocab_size": "384",
                 "gpt2.max_seq_len": "32"}
    for k, v in want_meta.items():
        if meta.get(k) != v:
            print(f"   FAIL: metadata {k} = {meta.get(k)!r}, want {v!r}")
            ok = False

    rng = np.random.default_rng(5)
    tokens = rng.integers(0, cfg.vocab, size=(2, 29), dtype=np.int32)
    tokens[0, 0] = cfg.vocab - 1
    tok_path, logits_path = os.path.join(tmp, "tokens.safetensors"), os.path.join(tmp, "l.st")
    save_safetensors(tok_path, {"tokens": tokens})
    r = subprocess.run([dump, "logits", "--model", out, "--tokens", tok_path, "--out",
                        logits_path], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"   FAIL: agpt_gpt2_dump logits exited {r.returncode}\n{r.stdout}{r.stderr}")
        return False
    got = load_safetensors(logits_path)[0]["logits"]
    ref64 = reference(cfg, weights, tokens, None, torch.float64)["logits"]
    ref32 = reference(cfg, weights, tokens, None, torch.float32)["logits"]
    e, e32 = rel_err(got, ref64), rel_err(ref32, ref64)
    good = e <= TOL and got.shape == ref64.shape
    ok &= good
    print(f"   logits of the imported model vs torch64: err {e:.2e} (torch32 {e32:.2e}) "
          f"-> {'ok' if good else 'FAIL'}")
    return ok


def check_bad_headers(agpt, tmp):
    cfg = Cfg(dim=16, n_layers=1, n_heads=2, vocab=50, padded_vocab=128, max_seq_len=8)
    weights = random_weights(cfg, 3)
    print("\n== llm.c import refuses bad files")
    ok = True
    cases = []
    p = os.path.join(tmp, "bad_magic.bin")
    write_llmc(p, cfg, weights, magic=20240520)
    cases.append(("wrong magic", p, "magic 20240520"))
    p = os.path.join(tmp, "bf16.bin")
    write_llmc(p, cfg, weights, version=5)
    cases.append(("version 5 (bf16)", p, "version 5"))
    p = os.path.join(tmp, "truncated.bin")
    write_llmc(p, cfg, weights)
    with open(p, "r+b") as f:
        f.truncate(os.path.getsize(p) - 10)
    cases.append(("truncated", p, "truncated"))
    for label, path, needle in cases:
        out = os.path.join(tmp, "refused_out")
        r = subprocess.run([agpt, "import", "--llmc", path, "--out", out], capture_output=True,
                           text=True)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        good = (r.returncode != 0 and len(lines) == 1 and path in lines[0] and needle in lines[0]
                and not os.path.exists(out) and not os.path.exists(out + ".tmp"))
        ok &= good
        print(f"   {label:<18} exit {r.returncode}: {lines[0] if lines else '(no message)'} "
              f"-> {'ok' if good else 'FAIL'}")
    return ok


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    agpt, dump = sys.argv[1], sys.argv[2]
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    ok = check_reference_itself()
    with tempfile.TemporaryDirectory(prefix="agpt_gpt2_ref_") as tmp:
        for name, extra in MODEL_CONFIGS:
            ok &= run_model_config(dump, name, extra, tmp)
        ok &= check_llmc_import(agpt, dump, tmp)
        ok &= check_bad_headers(agpt, tmp)
    print("\nRESULT:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
