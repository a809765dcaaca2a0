"""An independent PyTorch twin of the agpt model, written from docs design.md ("The model").

It exists to check the C++ model: same weights in, same logits, loss and gradients out. It is
deliberately plain (naive attention, explicit RoPE, no fusion) so that it is easy to audit
against the design text rather than against the C++ code.

Model (agpt flavor = Llama-3 block):
    x = tok_embeddings[tokens]
    per layer:  h = x + wo(attn(rmsnorm(x)))      out = h + w2(silu(w1 y) * w3 y),  y = rmsnorm(h)
    logits = output(rmsnorm(x_final))             (untied head)
    rmsnorm(x) = x * rsqrt(mean(x^2) + eps) * weight
    attention: fused q|k|v projection (stored as wq, wk, wv), H query heads, KV key/value heads,
    query head h reads kv head h // (H / KV); RoPE in Hugging Face's rotate_half layout (element i
    pairs with i + hd/2, angle pos * theta^(-2i/hd)) on q and k; causal softmax(q k^T / sqrt(hd)) v.

Variants (design.md: "QK-norm (RMSNorm on q and k per head, before RoPE), attention-logit
soft-capping c*tanh(s/c), final-logit soft-capping, ReLU^2 FFN (w2(relu(w1 x)^2), no w3)"):
    qk_norm:        q_h = rmsnorm(q_h, q_norm), k_h = rmsnorm(k_h, k_norm) for every head h, the
                    weights (head_dim,) shared by the heads, eps = norm_eps; then RoPE
    attn_softcap c: scores s = q k^T / sqrt(hd) become c * tanh(s / c), then mask and softmax
    final_softcap c: logits z become c * tanh(z / c) (the loss is that of the capped logits)
    ffn relu2:      w2(relu(w1 y)^2); the width is whatever the checkpoint's w1 has

Also: a hand-written safetensors reader/writer (the format is simple and the image has no
`safetensors` package).
"""

import json
import math
import struct

import numpy as np
import torch
import torch.nn.functional as F

# ------------------------------------------------------------------------------------------
# safetensors

_NP_DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64}


def load_safetensors(path):
    """Returns (tensors: dict name -> numpy array, metadata: dict str -> str)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: truncated ({len(raw)} bytes)")
    (hlen,) = struct.unpack("<Q", raw[:8])
    if 8 + hlen > len(raw):
        raise ValueError(f"{path}: header length {hlen} exceeds file")
    header = json.loads(raw[8 : 8 + hlen].decode("utf-8"))
    data = memoryview(raw)[8 + hlen :]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        dt = np.dtype(_NP_DTYPES[info["dtype"]]).newbyteorder("<")
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        if e - b != int(np.prod(shape, dtype=np.int64)) * dt.itemsize or e > len(data):
            raise ValueError(f"{path}: tensor {name}: bad offsets")
        out[name] = np.frombuffer(data[b:e], dtype=dt).reshape(shape).copy()
    return out, meta


def save_safetensors(path, tensors, metadata=None):
    """tensors: dict name -> numpy array (float32/float64/int32/int64)."""
    inv = {np.dtype(v): k for k, v in _NP_DTYPES.items()}
    header, blobs, pos = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        blob = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": inv[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [pos, pos + len(blob)],
        }
        blobs.append(blob)
        pos += len(blob)
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


# ------------------------------------------------------------------------------------------
# model


class Args:
    def __init__(self, dim, n_layers, n_heads, n_kv_heads, ffn_hidden, vocab, rope_theta,
                 norm_eps=1e-5, qk_norm=False, attn_softcap=0.0, final_softcap=0.0,
                 ffn="swiglu"):
        assert dim % n_heads == 0 and n_heads % n_kv_heads == 0
        assert ffn in ("swiglu", "relu2") and attn_softcap >= 0 and final_softcap >= 0
        self.dim, self.n_layers, self.n_heads, self.n_kv_heads = dim, n_layers, n_heads, n_kv_heads
        self.ffn_hidden, self.vocab, self.rope_theta, self.norm_eps = (
            ffn_hidden, vocab, rope_theta, norm_eps)
        self.head_dim = dim // n_heads
        self.qk_norm, self.attn_softcap, self.final_softcap, self.ffn = (
            bool(qk_norm), float(attn_softcap), float(final_softcap), ffn)

    @staticmethod
    def from_metadata(meta):
        return Args(int(meta["dim"]), int(meta["n_layers"]), int(meta["n_heads"]),
                    int(meta["n_kv_heads"]), int(meta["ffn_hidden"]), int(meta["vocab"]),
                    float(meta["rope_theta"]), float(meta["norm_eps"]),
                    qk_norm=meta.get("qk_norm", "0") == "1",
                    attn_softcap=float(meta.get("attn_softcap", "0")),
                    final_softcap=float(meta.get("final_softcap", "0")),
                    ffn=meta.get("ffn", "swiglu"))

    def switches_off(self):
        """These args without QK-norm and soft-caps (the FFN stays: its weights differ). Run on
        the same weights, it shows how far the switches move the output, i.e. that a comparison
        can tell a model that ignores them."""
        return Args(self.dim, self.n_layers, self.n_heads, self.n_kv_heads, self.ffn_hidden,
                    self.vocab, self.rope_theta, self.norm_eps, False, 0.0, 0.0, self.ffn)

    def describe(self):
        on = (["qk_norm"] if self.qk_norm else []) + (
            [f"attn_softcap {self.attn_softcap:g}"] if self.attn_softcap > 0 else []) + (
            [f"final_softcap {self.final_softcap:g}"] if self.final_softcap > 0 else []) + (
            [f"ffn {self.ffn}"] if self.ffn != "swiglu" else [])
        return ", ".join(on) or "none"

    # Flavors the tests and the benchmark use: debugmodel from design.md's table, the small
    # ones as agpt's registry (model_args.cpp) defines them. ffn_hidden is the resolved width.
    FLAVORS = {
        "tiny": dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=192,
                     rope_theta=1e4, vocab=32000),
        "small": dict(dim=192, n_layers=4, n_heads=6, n_kv_heads=6, ffn_hidden=512,
                      rope_theta=1e4, vocab=32000),
        "medium": dict(dim=384, n_layers=6, n_heads=6, n_kv_heads=6, ffn_hidden=1024,
                       rope_theta=1e4, vocab=32000),
        "debugmodel": dict(dim=256, n_layers=6, n_heads=16, n_kv_heads=16, ffn_hidden=768,
                           rope_theta=5e5, vocab=32000),
    }

    @staticmethod
    def flavor(name, vocab=None):
        kw = dict(Args.FLAVORS[name])
        if vocab is not None:
            kw["vocab"] = vocab
        return Args(**kw)


def param_shapes(a):
    """Name -> shape, in agpt's naming (torchtitan's)."""
    hd = a.head_dim
    s = {"tok_embeddings.weight": (a.vocab, a.dim)}
    for i in range(a.n_layers):
        p = f"layers.{i}."
        s[p + "attention_norm.weight"] = (a.dim,)
        s[p + "attention.wq.weight"] = (a.n_heads * hd, a.dim)
        s[p + "attention.wk.weight"] = (a.n_kv_heads * hd, a.dim)
        s[p + "attention.wv.weight"] = (a.n_kv_heads * hd, a.dim)
        s[p + "attention.wo.weight"] = (a.dim, a.n_heads * hd)
        if a.qk_norm:
            s[p + "attention.q_norm.weight"] = (hd,)
            s[p + "attention.k_norm.weight"] = (hd,)
        s[p + "ffn_norm.weight"] = (a.dim,)
        s[p + "feed_forward.w1.weight"] = (a.ffn_hidden, a.dim)
        if a.ffn == "swiglu":
            s[p + "feed_forward.w3.weight"] = (a.ffn_hidden, a.dim)
        s[p + "feed_forward.w2.weight"] = (a.dim, a.ffn_hidden)
    s["norm.weight"] = (a.dim,)
    s["output.weight"] = (a.vocab, a.dim)
    return s


def rmsnorm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_tables(T, hd, theta, dtype):
    # Angles in float64 whatever the compute dtype, so the tables are as exact as they can be.
    i = torch.arange(hd // 2, dtype=torch.float64)
    inv_freq = theta ** (-2.0 * i / hd)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (T, hd/2)
    ang = torch.cat([ang, ang], dim=-1)  # (T, hd): element i and i+hd/2 share an angle
    return ang.cos().to(dtype), ang.sin().to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):
    # x (B, heads, T, hd); cos/sin (T, hd)
    return x * cos + rotate_half(x) * sin


class AgptTorch(torch.nn.Module):
    def __init__(self, args, dtype=torch.float32):
        super().__init__()
        self.args = args
        self.names = list(param_shapes(args))
        # ParameterDict forbids '.', so parameters live in a list with a name index.
        self.plist = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.zeros(s, dtype=dtype)) for s in param_shapes(args).values()])
        self.index = {n: k for k, n in enumerate(self.names)}

    def p(self, name):
        return self.plist[self.index[name]]

    def named(self):
        return [(n, self.plist[k]) for k, n in enumerate(self.names)]

    def load(self, arrays, prefix="param."):
        with torch.no_grad():
            for n, prm in self.named():
                prm.copy_(torch.from_numpy(np.asarray(arrays[prefix + n])).to(prm.dtype))

    def init_normal(self, std=0.02, seed=0):
        """Any reasonable init; used by the benchmark only (tests load agpt's weights)."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for n, prm in self.named():
                if n.endswith("norm.weight"):
                    prm.fill_(1.0)
                else:
                    prm.copy_(torch.randn(prm.shape, generator=g, dtype=prm.dtype) * std)

    def attention(self, x, i, cos, sin):
        a = self.args
        B, T, _ = x.shape
        H, KV, hd = a.n_heads, a.n_kv_heads, a.head_dim
        pre = f"layers.{i}.attention."
        wqkv = torch.cat([self.p(pre + "wq.weight"), self.p(pre + "wk.weight"),
                          self.p(pre + "wv.weight")], dim=0)
        qkv = x @ wqkv.t()  # (B, T, (H + 2KV) hd): one fused projection
        q, k, v = torch.split(qkv, [H * hd, KV * hd, KV * hd], dim=-1)
        q = q.view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, KV, hd).transpose(1, 2)
        v = v.view(B, T, KV, hd).transpose(1, 2)
        if a.qk_norm:  # per head, over its hd elements, before RoPE
            q = rmsnorm(q, self.p(pre + "q_norm.weight"), a.norm_eps)
            k = rmsnorm(k, self.p(pre + "k_norm.weight"), a.norm_eps)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rep = H // KV
        k = k.repeat_interleave(rep, dim=1)  # query head h reads kv head h // rep
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        if a.attn_softcap > 0:
            scores = a.attn_softcap * torch.tanh(scores / a.attn_softcap)
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(mask, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, H * hd)
        return y @ self.p(pre + "wo.weight").t()

    def feed_forward(self, y, i):
        pre = f"layers.{i}.feed_forward."
        w1, w2 = self.p(pre + "w1.weight"), self.p(pre + "w2.weight")
        if self.args.ffn == "relu2":
            return F.relu(y @ w1.t()).square() @ w2.t()
        w3 = self.p(pre + "w3.weight")
        return (F.silu(y @ w1.t()) * (y @ w3.t())) @ w2.t()

    def forward(self, tokens):
        """tokens (B, T) int64 -> logits (B, T, V)."""
        a = self.args
        T = tokens.shape[1]
        dtype = self.plist[0].dtype
        cos, sin = rope_tables(T, a.head_dim, a.rope_theta, dtype)
        x = F.embedding(tokens, self.p("tok_embeddings.weight"))
        for i in range(a.n_layers):
            pre = f"layers.{i}."
            h = x + self.attention(rmsnorm(x, self.p(pre + "attention_norm.weight"), a.norm_eps),
                                   i, cos, sin)
            x = h + self.feed_forward(rmsnorm(h, self.p(pre + "ffn_norm.weight"), a.norm_eps), i)
        x = rmsnorm(x, self.p("norm.weight"), a.norm_eps)
        logits = x @ self.p("output.weight").t()
        if a.final_softcap > 0:
            logits = a.final_softcap * torch.tanh(logits / a.final_softcap)
        return logits

    def loss(self, tokens, targets):
        logits = self.forward(tokens)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=-1)


def num_params(args):
    return sum(int(np.prod(s)) for s in param_shapes(args).values())


def flops_per_token(args, seq_len):
    """design.md: 6 (N - N_embedding) + 12 L H hd T."""
    n = num_params(args) - args.vocab * args.dim
    return 6.0 * n + 12.0 * args.n_layers * args.n_heads * args.head_dim * seq_len
