"""The training loop and report the PyTorch end-to-end GPU benchmarks share
(bench/torch_llama_gpu.py, bench/torch_gpt2_gpu.py): a model built by the caller, trained on
random tokens with bf16 autocast (fp32 master weights), fused AdamW (lr 3e-4, betas 0.9/0.95,
weight decay 0.1) and gradient-norm clipping (1.0), eager and then torch.compile.

Prints, in the device check's `BENCH name value unit` format, for MODE in eager / compile:
  BENCH torch_MODE_NAME_tok_per_s    (median step)
  BENCH torch_MODE_NAME_step_ms
  BENCH torch_MODE_NAME_mfu          (the caller's FLOPs per token, 989 TFLOP/s peak)
  BENCH torch_MODE_NAME_peak_mem_gib (torch.cuda.max_memory_allocated)
with NAME suffixed _L<layers> when --layers is not 12.
"""
import argparse
import statistics
import time

import torch


def bench(mode, name, make_model, vocab, flops_per_token, args):
    torch.manual_seed(0)
    dev = "cuda"
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = make_model(args).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1, fused=True)
    fwd = torch.compile(model) if mode == "compile" else model
    g = torch.Generator(device=dev).manual_seed(1)
    batches = [torch.randint(0, vocab, (args.batch, args.seq + 1), device=dev, generator=g)
               for _ in range(3)]

    def step(i):
        b = batches[i % len(batches)]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(b[:, :-1].contiguous(), b[:, 1:].contiguous())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.time()
    for i in range(args.warmup):
        loss = step(i)
        torch.cuda.synchronize()
        print(f"{mode}: warm-up step {i + 1}: loss {loss.item():.4f} "
              f"({time.time() - t0:.1f} s since start)", flush=True)
    times = []
    for i in range(args.steps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        loss = step(args.warmup + i)
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
        print(f"{mode}: step {i + 1}: loss {loss.item():.4f}, {times[-1]:.1f} ms", flush=True)
    ms = statistics.median(times)
    tok_s = args.batch * args.seq / (ms * 1e-3)
    mfu = 100.0 * flops_per_token(model, args) * tok_s / 989e12
    peak = torch.cuda.max_memory_allocated() / 2**30
    tag = f"torch_{mode}_{name}" + ("" if args.layers == 12 else f"_L{args.layers}")
    print(f"BENCH {tag}_tok_per_s {tok_s:.0f} tok/s")
    print(f"BENCH {tag}_step_ms {ms:.2f} ms")
    print(f"BENCH {tag}_mfu {mfu:.2f} %")
    print(f"BENCH {tag}_peak_mem_gib {peak:.2f} GiB", flush=True)
    del model, opt, fwd, batches


def gpu_bench_main(name, make_model, vocab, flops_per_token):
    """make_model(args) -> nn.Module with forward(tokens, targets) -> mean loss;
    flops_per_token(model, args) -> training FLOPs per token."""
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--modes", default="eager,compile")
    args = p.parse_args()
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}; "
          f"{name} batch {args.batch} x seq {args.seq}, bf16 autocast, fused AdamW", flush=True)
    for mode in args.modes.split(","):
        try:
            bench(mode.strip(), name, make_model, vocab, flops_per_token, args)
        except Exception as e:  # report and go on to the next mode
            print(f"{name}: {mode} failed: {type(e).__name__}: {e}", flush=True)
        torch.cuda.empty_cache()
