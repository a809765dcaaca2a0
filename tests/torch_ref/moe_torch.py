"""An independent PyTorch twin of agpt's MLA + MoE model (design.md's MoE flavors, DeepSeek-V3
style), written from the definitions below, to check the C++ model on identical weights.

Block: h = x + MLA(rmsnorm(x)),  out = h + FFN(rmsnorm(h)); FFN is SwiGLU in the first
n_dense_layers layers and the MoE elsewhere; final rmsnorm and untied head as the dense model.

MLA (DeepSeek-V2/V3):
    q   = wq x                         (q_lora_rank 0)  or  wq_b rmsnorm(wq_a x, q_norm)
    kva = wkv_a x = [c (kv_lora_rank) | k_pe (qk_rope)]
    [k_nope | v] per head = wkv_b rmsnorm(c, kv_norm)
    q_h = [q_nope | rope(q_pe)], k_h = [k_nope | rope(k_pe)] (k_pe shared by every head)
    softmax(q_h k_h^T * scale, causal) v_h, concatenated, then wo
    scale = (qk_nope + qk_rope)^-1/2, times mscale^2 with mscale = 0.1 * mscale_arg * ln(factor) + 1
    when max_seq_len > original_seq_len (YaRN); RoPE in rotate_half layout on the rope part with
    YaRN's frequency ramp in that case.
MoE (token-choice top-k):
    s = softmax(x W_r^T) or sigmoid(x W_r^T), in fp32 or wider
    chosen = topk(s + expert_bias, k)  (the bias steers the choice only)
    g = s[chosen] (/ sum, if route_norm) * route_scale
    out = sum_j g_j * SwiGLU_{chosen_j}(x) + SwiGLU_shared(x)
    experts: w1, w3 (E, F, D), w2 (E, D, F); shared: n_shared * F wide.
Sequence-level balance loss (DeepSeek-V3, aux_loss_alpha > 0), per MoE layer and sequence b of
length T: f_e = E / (k T) * #{t in b: e chosen}, P_e = mean_t s_{t,e} / sum_j s_{t,j};
L = alpha * mean_b sum_e f_e P_e, added to the mean cross-entropy.
"""

import math

import torch
import torch.nn.functional as F

from agpt_torch import rmsnorm, rotate_half


class MoeArgs:
    INT_KEYS = ["dim", "n_layers", "n_heads", "vocab", "ffn_hidden", "q_lora_rank",
                "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                "max_seq_len", "original_seq_len", "beta_fast", "beta_slow", "n_experts",
                "n_shared_experts", "top_k", "moe_hidden", "n_dense_layers", "route_norm"]
    FLOAT_KEYS = ["rope_theta", "norm_eps", "rope_factor", "mscale", "route_scale"]

    def __init__(self, meta):
        for k in self.INT_KEYS:
            setattr(self, k, int(meta[k]))
        for k in self.FLOAT_KEYS:
            setattr(self, k, float(meta[k]))
        self.router_score = meta["router_score"]
        self.aux_loss_alpha = float(meta.get("aux_loss_alpha", "0"))
        assert self.router_score in ("softmax", "sigmoid")

    def qk_head_dim(self):
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def yarn(self):
        return self.max_seq_len > self.original_seq_len

    def softmax_scale(self):
        s = self.qk_head_dim() ** -0.5
        if self.yarn():
            m = 0.1 * self.mscale * math.log(self.rope_factor) + 1.0
            s *= m * m
        return s

    def is_moe_layer(self, i):
        return self.n_experts > 0 and i >= self.n_dense_layers

    def describe(self):
        return (f"dim {self.dim}, layers {self.n_layers} ({self.n_dense_layers} dense), heads "
                f"{self.n_heads}, q_lora {self.q_lora_rank}, kv_lora {self.kv_lora_rank}, "
                f"qk {self.qk_nope_head_dim}+{self.qk_rope_head_dim}, v {self.v_head_dim}, "
                f"yarn {'on' if self.yarn() else 'off'}, experts {self.n_experts}/"
                f"{self.n_shared_experts} top-{self.top_k} width {self.moe_hidden}, router "
                f"{self.router_score} norm {self.route_norm} scale {self.route_scale:g}")


def param_shapes(a):
    D, H, P, R = a.dim, a.n_heads, a.qk_head_dim(), a.qk_rope_head_dim
    s = {"tok_embeddings.weight": (a.vocab, D)}
    for i in range(a.n_layers):
        p = f"layers.{i}."
        s[p + "attention_norm.weight"] = (D,)
        if a.q_lora_rank > 0:
            s[p + "attention.wq_a.weight"] = (a.q_lora_rank, D)
            s[p + "attention.q_norm.weight"] = (a.q_lora_rank,)
            s[p + "attention.wq_b.weight"] = (H * P, a.q_lora_rank)
        else:
            s[p + "attention.wq.weight"] = (H * P, D)
        s[p + "attention.wkv_a.weight"] = (a.kv_lora_rank + R, D)
        s[p + "attention.kv_norm.weight"] = (a.kv_lora_rank,)
        s[p + "attention.wkv_b.weight"] = (H * (a.qk_nope_head_dim + a.v_head_dim),
                                           a.kv_lora_rank)
        s[p + "attention.wo.weight"] = (D, H * a.v_head_dim)
        s[p + "ffn_norm.weight"] = (D,)
        if a.is_moe_layer(i):
            E, Fe, Fs = a.n_experts, a.moe_hidden, a.n_shared_experts * a.moe_hidden
            s[p + "moe.router.gate.weight"] = (E, D)
            s[p + "moe.expert_bias"] = (E,)
            s[p + "moe.experts.w1"] = (E, Fe, D)
            s[p + "moe.experts.w2"] = (E, D, Fe)
            s[p + "moe.experts.w3"] = (E, Fe, D)
            if Fs > 0:
                s[p + "moe.shared_experts.w1.weight"] = (Fs, D)
                s[p + "moe.shared_experts.w2.weight"] = (D, Fs)
                s[p + "moe.shared_experts.w3.weight"] = (Fs, D)
        else:
            s[p + "feed_forward.w1.weight"] = (a.ffn_hidden, D)
            s[p + "feed_forward.w3.weight"] = (a.ffn_hidden, D)
            s[p + "feed_forward.w2.weight"] = (D, a.ffn_hidden)
    s["norm.weight"] = (D,)
    s["output.weight"] = (a.vocab, D)
    return s


def rope_inv_freq(a):
    """DeepSeek-V3's precompute_freqs_cis frequencies (float64)."""
    dim, base = a.qk_rope_head_dim, a.rope_theta
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    if a.yarn():
        def corr(rot):
            return dim * math.log(a.original_seq_len / (rot * 2 * math.pi)) / (2 * math.log(base))
        low = max(math.floor(corr(a.beta_fast)), 0)
        high = min(math.ceil(corr(a.beta_slow)), dim - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
        smooth = 1 - ramp
        freqs = freqs / a.rope_factor * (1 - smooth) + freqs * smooth
    return freqs


class MoeTorch(torch.nn.Module):
    def __init__(self, args, dtype=torch.float32):
        super().__init__()
        self.args = args
        shapes = param_shapes(args)
        self.names = [n for n in shapes if not n.endswith("expert_bias")]
        self.plist = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.zeros(shapes[n], dtype=dtype)) for n in self.names])
        self.index = {n: k for k, n in enumerate(self.names)}
        # The expert bias is state, not a trained parameter.
        self.bias = {n: torch.zeros(shapes[n], dtype=dtype) for n in shapes
                     if n.endswith("expert_bias")}

    def p(self, name):
        return self.bias[name] if name in self.bias else self.plist[self.index[name]]

    def named(self):
        return [(n, self.plist[k]) for k, n in enumerate(self.names)]

    def load(self, arrays, prefix="param."):
        with torch.no_grad():
            for n, prm in self.named():
                prm.copy_(torch.from_numpy(arrays[prefix + n]).to(prm.dtype))
            for n in self.bias:
                self.bias[n] = torch.from_numpy(arrays[prefix + n]).to(self.bias[n].dtype)

    def mla(self, x, i, cos, sin):
        a = self.args
        B, T, _ = x.shape
        H, Pn, R, V = a.n_heads, a.qk_nope_head_dim, a.qk_rope_head_dim, a.v_head_dim
        pre = f"layers.{i}.attention."
        if a.q_lora_rank > 0:
            q = rmsnorm(x @ self.p(pre + "wq_a.weight").t(), self.p(pre + "q_norm.weight"),
                        a.norm_eps) @ self.p(pre + "wq_b.weight").t()
        else:
            q = x @ self.p(pre + "wq.weight").t()
        q = q.view(B, T, H, Pn + R).transpose(1, 2)  # (B, H, T, P)
        q_nope, q_pe = q[..., :Pn], q[..., Pn:]
        kva = x @ self.p(pre + "wkv_a.weight").t()
        c, k_pe = kva[..., :a.kv_lora_rank], kva[..., a.kv_lora_rank:]
        kv = rmsnorm(c, self.p(pre + "kv_norm.weight"), a.norm_eps) @ self.p(
            pre + "wkv_b.weight").t()
        kv = kv.view(B, T, H, Pn + V).transpose(1, 2)
        k_nope, v = kv[..., :Pn], kv[..., Pn:]
        q_pe = q_pe * cos + rotate_half(q_pe) * sin
        k_pe = (k_pe * cos + rotate_half(k_pe) * sin)[:, None].expand(B, H, T, R)
        q = torch.cat([q_nope, q_pe], dim=-1)
        k = torch.cat([k_nope, k_pe], dim=-1)
        scores = (q @ k.transpose(-1, -2)) * a.softmax_scale()
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        y = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1) @ v
        return y.transpose(1, 2).reshape(B, T, H * V) @ self.p(pre + "wo.weight").t()

    @staticmethod
    def swiglu(y, w1, w2, w3):
        return (F.silu(y @ w1.t()) * (y @ w3.t())) @ w2.t()

    def moe(self, y, i):
        a = self.args
        pre = f"layers.{i}.moe."
        B, T, D = y.shape
        x = y.reshape(B * T, D)
        logits = (x @ self.p(pre + "router.gate.weight").t()).to(
            torch.promote_types(x.dtype, torch.float32))
        s = torch.softmax(logits, dim=-1) if a.router_score == "softmax" else torch.sigmoid(logits)
        _, chosen = torch.topk(s + self.p(pre + "expert_bias").to(s.dtype), a.top_k, dim=-1)
        g = s.gather(1, chosen)
        if a.route_norm:
            g = g / (g.sum(-1, keepdim=True) + 1e-20)
        g = (g * a.route_scale).to(x.dtype)
        out = torch.zeros_like(x)
        w1, w2, w3 = (self.p(pre + "experts." + w) for w in ("w1", "w2", "w3"))
        for e in range(a.n_experts):
            tok, slot = torch.nonzero(chosen == e, as_tuple=True)
            if tok.numel():
                out = out.index_add(0, tok, g[tok, slot, None] * self.swiglu(x[tok], w1[e], w2[e],
                                                                             w3[e]))
        if a.n_shared_experts > 0:
            sp = pre + "shared_experts."
            out = out + self.swiglu(x, self.p(sp + "w1.weight"), self.p(sp + "w2.weight"),
                                    self.p(sp + "w3.weight"))
        self.last_chosen[i] = chosen
        if a.aux_loss_alpha > 0:
            sn = s / s.sum(-1, keepdim=True)
            P = sn.view(B, T, -1).mean(1)
            counts = F.one_hot(chosen, a.n_experts).sum(1).view(B, T, -1).sum(1).to(P.dtype)
            f = counts * a.n_experts / (a.top_k * T)
            self.aux = self.aux + a.aux_loss_alpha * (f * P).sum(-1).mean()
        return out.view(B, T, D)

    def forward(self, tokens):
        a = self.args
        T = tokens.shape[1]
        dtype = self.plist[0].dtype
        ang = torch.arange(T, dtype=torch.float64)[:, None] * rope_inv_freq(a)[None, :]
        ang = torch.cat([ang, ang], dim=-1)
        cos, sin = ang.cos().to(dtype), ang.sin().to(dtype)
        self.last_chosen = {}
        self.aux = 0.0
        x = F.embedding(tokens, self.p("tok_embeddings.weight"))
        for i in range(a.n_layers):
            pre = f"layers.{i}."
            h = x + self.mla(rmsnorm(x, self.p(pre + "attention_norm.weight"), a.norm_eps), i,
                             cos, sin)
            y = rmsnorm(h, self.p(pre + "ffn_norm.weight"), a.norm_eps)
            if a.is_moe_layer(i):
                x = h + self.moe(y, i)
            else:
                f = pre + "feed_forward."
                x = h + self.swiglu(y, self.p(f + "w1.weight"), self.p(f + "w2.weight"),
                                    self.p(f + "w3.weight"))
        x = rmsnorm(x, self.p("norm.weight"), a.norm_eps)
        return x @ self.p("output.weight").t()

    def loss(self, tokens, targets):
        """Mean cross-entropy plus the balance loss; the cross-entropy alone is in last_ce."""
        logits = self.forward(tokens)
        self.last_ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                       ignore_index=-1)
        return self.last_ce + self.aux
