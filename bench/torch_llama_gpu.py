#!/usr/bin/env python3
"""PyTorch side of the end-to-end GPU benchmark (issue 10): the Llama-style 124M that
tests/cuda/model_bench.cpp trains in agpt (dim 768, 12 layers, 12 heads, 4 kv heads, vocab
32000, SwiGLU width 2048, RMSNorm, RoPE in Hugging Face's rotate_half layout, untied head), as
a plain nn.Module trained on random tokens with bf16 autocast (fp32 master weights), fused
AdamW and gradient-norm clipping (1.0): eager, then torch.compile (the loop and the report:
bench/torch_gpu_harness.py).

Prints, in the device check's `BENCH name value unit` format, for MODE in eager / compile:
  BENCH torch_MODE_llama124m_tok_per_s   (median step)
  BENCH torch_MODE_llama124m_step_ms
  BENCH torch_MODE_llama124m_mfu         (design.md's FLOPs per token, 989 TFLOP/s peak)
  BENCH torch_MODE_llama124m_peak_mem_gib (torch.cuda.max_memory_allocated)

usage: python3 bench/torch_llama_gpu.py [--batch 32] [--seq 1024] [--steps 6] [--warmup 2]
                                        [--modes eager,compile] [--layers 12]
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_gpu_harness import gpu_bench_main

DIM, HEADS, KV_HEADS, VOCAB, FFN = 768, 12, 4, 32000, 2048
ROPE_THETA, EPS = 10000.0, 1e-5


class RMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight, EPS)


def rope_tables(T, hd, device):
    inv = 1.0 / (ROPE_THETA ** (torch.arange(0, hd // 2, dtype=torch.float64) * 2 / hd))
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    return ang.cos().float().to(device), ang.sin().float().to(device)


def apply_rope(x, cos, sin):  # x (B, h, T, hd); rotate_half pairs i and i + hd/2
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).type_as(x)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.hd = DIM // HEADS
        self.wq = nn.Linear(DIM, HEADS * self.hd, bias=False)
        self.wk = nn.Linear(DIM, KV_HEADS * self.hd, bias=False)
        self.wv = nn.Linear(DIM, KV_HEADS * self.hd, bias=False)
        self.wo = nn.Linear(HEADS * self.hd, DIM, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, HEADS, self.hd).transpose(1, 2)
        k = self.wk(x).view(B, T, KV_HEADS, self.hd).transpose(1, 2)
        v = self.wv(x).view(B, T, KV_HEADS, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        # GQA as torchtitan does it (repeat the kv heads), so the flash backend is used.
        rep = HEADS // KV_HEADS
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(o.transpose(1, 2).reshape(B, T, HEADS * self.hd))


class FeedForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1 = nn.Linear(DIM, FFN, bias=False)
        self.w3 = nn.Linear(DIM, FFN, bias=False)
        self.w2 = nn.Linear(FFN, DIM, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention_norm = RMSNorm(DIM)
        self.attention = Attention()
        self.ffn_norm = RMSNorm(DIM)
        self.feed_forward = FeedForward()

    def forward(self, x, cos, sin):
        h = x + self.attention(self.attention_norm(x), cos, sin)
        return h + self.feed_forward(self.ffn_norm(h))


class Llama(nn.Module):
    def __init__(self, layers, T):
        super().__init__()
        self.tok_embeddings = nn.Embedding(VOCAB, DIM)
        self.layers = nn.ModuleList(Block() for _ in range(layers))
        self.norm = RMSNorm(DIM)
        self.output = nn.Linear(DIM, VOCAB, bias=False)
        cos, sin = rope_tables(T, DIM // HEADS, "cpu")
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, tokens, targets):
        T = tokens.shape[1]
        cos, sin = self.cos[:T], self.sin[:T]
        x = self.tok_embeddings(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin)
        logits = self.output(self.norm(x))
        return F.cross_entropy(logits.float().view(-1, VOCAB), targets.reshape(-1))


def flops_per_token(model, layers, T):
    n = sum(p.numel() for p in model.parameters())
    n_emb = VOCAB * DIM
    return 6 * (n - n_emb) + 12 * layers * HEADS * (DIM // HEADS) * T


def main():
    gpu_bench_main("llama124m", lambda args: Llama(args.layers, args.seq), VOCAB,
                   lambda model, args: flops_per_token(model, args.layers, args.seq))


if __name__ == "__main__":
    main()
