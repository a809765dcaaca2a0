#!/usr/bin/env python3
"""PyTorch side of the GPT-2 end-to-end GPU benchmark: the GPT-2 124M that
tests/cuda/model_bench.cpp --model gpt2 trains in agpt (dim 768, 12 layers, 12 heads, context
1024, pre-LayerNorm with biases, fused c_attn, tanh GELU MLP of width 3072, learned position
embeddings, the LM head tied to wte; vocabulary 50257 with wte padded to 50304 rows, the logits
over the 50257 real ones, as model/gpt2.h), a plain nn.Module trained on random tokens with bf16
autocast, fused AdamW and clipping, eager then torch.compile (bench/torch_gpu_harness.py).

Prints BENCH torch_MODE_gpt2_124m_{tok_per_s,step_ms,mfu,peak_mem_gib} for MODE in eager,
compile (MFU: model/gpt2.h's FLOPs per token against 989 TFLOP/s).

usage: python3 bench/torch_gpt2_gpu.py [--batch 32] [--seq 1024] [--steps 6] [--warmup 2]
                                       [--modes eager,compile] [--layers 12]
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_gpu_harness import gpu_bench_main

DIM, HEADS, VOCAB, PADDED_VOCAB, CONTEXT = 768, 12, 50257, 50304, 1024
EPS = 1e-5


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_attn = nn.Linear(DIM, 3 * DIM)
        self.c_proj = nn.Linear(DIM, DIM)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = self.c_attn(x).split(DIM, dim=2)
        q, k, v = (t.view(B, T, HEADS, DIM // HEADS).transpose(1, 2) for t in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(o.transpose(1, 2).reshape(B, T, DIM))


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc = nn.Linear(DIM, 4 * DIM)
        self.c_proj = nn.Linear(4 * DIM, DIM)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(DIM, eps=EPS)
        self.attn = Attention()
        self.ln_2 = nn.LayerNorm(DIM, eps=EPS)
        self.mlp = Mlp()

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Gpt2(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.wte = nn.Embedding(PADDED_VOCAB, DIM)
        self.wpe = nn.Embedding(CONTEXT, DIM)
        self.h = nn.ModuleList(Block() for _ in range(layers))
        self.ln_f = nn.LayerNorm(DIM, eps=EPS)
        # As tests/cuda/model_bench.cpp: matrices and embeddings N(0, 0.02), biases 0, norms 1.
        for name, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)

    def forward(self, tokens, targets):
        T = tokens.shape[1]
        x = self.wte(tokens) + self.wpe.weight[:T]
        for block in self.h:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight[:VOCAB])
        return F.cross_entropy(logits.float().view(-1, VOCAB), targets.reshape(-1))


def flops_per_token(model, args):
    # model/gpt2.h: 6·(N − N_embedding + V·dim) + 12·L·H·hd·T, N counting wte's padding rows.
    n = sum(p.numel() for p in model.parameters())
    n_emb = (PADDED_VOCAB + CONTEXT) * DIM
    return 6 * (n - n_emb + VOCAB * DIM) + 12 * args.layers * HEADS * (DIM // HEADS) * args.seq


def main():
    gpu_bench_main("gpt2_124m", lambda args: Gpt2(args.layers), VOCAB, flops_per_token)


if __name__ == "__main__":
    main()
