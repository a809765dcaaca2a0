"""A plain PyTorch LlamaForCausalLM (or Qwen3ForCausalLM) built from a Hugging Face folder
(config.json + model.safetensors), written from Hugging Face's Llama and Qwen3 definitions, not
from agpt's code.

It reads the tensors under their Hugging Face names only, so it checks what `transformers`
would see: the names, the shapes, the config keys, and the rotate_half RoPE layout.

    h = x + o_proj(attn(input_layernorm(x)))
    out = h + down_proj(silu(gate_proj(y)) * up_proj(y)),  y = post_attention_layernorm(h)
    logits = lm_head(norm(out))   (embed_tokens when tie_word_embeddings)
    RMSNorm: weight * x / sqrt(mean(x^2) + rms_norm_eps)
    RoPE: inv_freq = rope_theta^(-arange(0, hd, 2) / hd), emb = cat(freqs, freqs),
          q' = q cos + rotate_half(q) sin with rotate_half(x) = cat(-x2, x1)
    attention: repeat_kv (kv head j serves query heads j*n_rep .. j*n_rep+n_rep-1), causal
               softmax(q k^T / sqrt(hd)) v
    Qwen3 (model_type "qwen3") is the same block plus self_attn.q_norm / k_norm: RMSNorm
    (weight of head_dim, rms_norm_eps) over each head of q_proj(x).view(B, T, H, hd) and of
    k_proj(x), before the transpose and RoPE; use_sliding_window must be false.
"""

import json
import math
import os

import numpy as np
import torch

from agpt_torch import load_safetensors

# Keys LlamaConfig needs (or agpt's export promises) to build the model.
REQUIRED_KEYS = [
    "architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "vocab_size", "rms_norm_eps", "rope_theta",
    "max_position_embeddings", "tie_word_embeddings", "torch_dtype", "hidden_act",
]


def expected_tensors(cfg):
    """Name -> shape of LlamaForCausalLM's state dict for this config."""
    D, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H = cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim", D // H)
    s = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        s[p + "self_attn.q_proj.weight"] = (H * hd, D)
        s[p + "self_attn.k_proj.weight"] = (KV * hd, D)
        s[p + "self_attn.v_proj.weight"] = (KV * hd, D)
        s[p + "self_attn.o_proj.weight"] = (D, H * hd)
        if cfg["model_type"] == "qwen3":
            s[p + "self_attn.q_norm.weight"] = (hd,)
            s[p + "self_attn.k_norm.weight"] = (hd,)
        s[p + "mlp.gate_proj.weight"] = (I, D)
        s[p + "mlp.up_proj.weight"] = (I, D)
        s[p + "mlp.down_proj.weight"] = (D, I)
        s[p + "input_layernorm.weight"] = (D,)
        s[p + "post_attention_layernorm.weight"] = (D,)
    if not cfg.get("tie_word_embeddings", False):
        s["lm_head.weight"] = (V, D)
    return s


class HfLlama:
    def __init__(self, folder, dtype=torch.float64):
        with open(os.path.join(folder, "config.json")) as f:
            self.cfg = json.load(f)
        cfg = self.cfg
        missing = [k for k in REQUIRED_KEYS if k not in cfg]
        assert not missing, f"config.json lacks {missing}"
        self.qwen3 = cfg["model_type"] == "qwen3"
        assert (cfg["model_type"], cfg["architectures"]) in (
            ("llama", ["LlamaForCausalLM"]), ("qwen3", ["Qwen3ForCausalLM"]))
        assert not (self.qwen3 and cfg.get("use_sliding_window", False))
        assert cfg["hidden_act"] == "silu" and not cfg.get("attention_bias", False)
        assert cfg.get("rope_scaling") is None
        tensors, meta = load_safetensors(os.path.join(folder, "model.safetensors"))
        assert meta.get("format") == "pt", "transformers expects __metadata__ format=pt"
        want = expected_tensors(cfg)
        assert set(tensors) == set(want), (
            f"tensor names differ: extra {sorted(set(tensors) - set(want))[:5]}, "
            f"missing {sorted(set(want) - set(tensors))[:5]}")
        for n, shape in want.items():
            assert tuple(tensors[n].shape) == shape, f"{n}: {tensors[n].shape} != {shape}"
        self.w = {n: torch.from_numpy(np.asarray(a)).to(dtype) for n, a in tensors.items()}
        self.dtype = dtype
        self.H = cfg["num_attention_heads"]
        self.KV = cfg.get("num_key_value_heads", self.H)
        self.hd = cfg.get("head_dim", cfg["hidden_size"] // self.H)
        self.eps = cfg["rms_norm_eps"]

    def rms_norm(self, x, weight):
        var = x.pow(2).mean(-1, keepdim=True)
        return weight * (x * torch.rsqrt(var + self.eps))

    def rotary(self, T):
        hd = self.hd
        inv_freq = 1.0 / (self.cfg["rope_theta"] ** (
            torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(self.dtype), emb.sin().to(self.dtype)

    @staticmethod
    def rotate_half(x):
        x1 = x[..., : x.shape[-1] // 2]
        x2 = x[..., x.shape[-1] // 2:]
        return torch.cat((-x2, x1), dim=-1)

    def layer(self, x, i, cos, sin, mask):
        w = lambda n: self.w[f"model.layers.{i}.{n}.weight"]
        B, T, _ = x.shape
        y = self.rms_norm(x, w("input_layernorm"))
        q = (y @ w("self_attn.q_proj").T).view(B, T, self.H, self.hd)
        k = (y @ w("self_attn.k_proj").T).view(B, T, self.KV, self.hd)
        if self.qwen3:
            q = self.rms_norm(q, w("self_attn.q_norm"))
            k = self.rms_norm(k, w("self_attn.k_norm"))
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = (y @ w("self_attn.v_proj").T).view(B, T, self.KV, self.hd).transpose(1, 2)
        q = q * cos + self.rotate_half(q) * sin
        k = k * cos + self.rotate_half(k) * sin
        n_rep = self.H // self.KV
        # repeat_kv: (B, KV, T, hd) -> (B, KV, n_rep, T, hd) -> (B, H, T, hd)
        k = k[:, :, None].expand(B, self.KV, n_rep, T, self.hd).reshape(B, self.H, T, self.hd)
        v = v[:, :, None].expand(B, self.KV, n_rep, T, self.hd).reshape(B, self.H, T, self.hd)
        scores = q @ k.transpose(2, 3) / math.sqrt(self.hd) + mask
        attn = torch.softmax(scores, dim=-1) @ v
        attn = attn.transpose(1, 2).reshape(B, T, self.H * self.hd)
        h = x + attn @ w("self_attn.o_proj").T
        y = self.rms_norm(h, w("post_attention_layernorm"))
        ffn = torch.nn.functional.silu(y @ w("mlp.gate_proj").T) * (y @ w("mlp.up_proj").T)
        return h + ffn @ w("mlp.down_proj").T

    def logits(self, ids):
        """ids: list of ints -> (T, V) logits."""
        tokens = torch.tensor([ids], dtype=torch.long)
        T = tokens.shape[1]
        x = self.w["model.embed_tokens.weight"][tokens]
        cos, sin = self.rotary(T)
        mask = torch.full((T, T), float("-inf"), dtype=self.dtype).triu(1)
        for i in range(self.cfg["num_hidden_layers"]):
            x = self.layer(x, i, cos, sin, mask)
        x = self.rms_norm(x, self.w["model.norm.weight"])
        head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])
        return (x @ head.T)[0]
