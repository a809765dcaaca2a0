"""agpt vs PyTorch eager: training-step throughput and peak memory on the same model and shapes.

    /usr/bin/python3 bench/bench_vs_pytorch.py --agpt build/release/agpt \\
        [--flavor debugmodel] [--batch 8] [--seq 256] [--steps 20] [--warmup 3] [--threads 2]

Each side runs in a fresh process, so the peak resident set (ru_maxrss, read for the child with
wait4) belongs to that run alone. agpt runs `agpt bench ...`, which prints one JSON line; the
torch side trains the twin in tests/torch_ref/agpt_torch.py (fp32, forward, cross-entropy,
backward, grad clipping at 1.0, AdamW step on random tokens). Both print one JSON line with the
same keys; the ratios follow. Without --agpt only the torch half runs.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TORCH_REF = os.path.join(os.path.dirname(HERE), "tests", "torch_ref")


def thread_env(threads):
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    return env


def run_child(cmd, env):
    """Runs cmd; returns (last JSON line of stdout, child's peak RSS in GiB, stdout, stderr)."""
    # stderr goes to a file so that a chatty child cannot fill one pipe while we block on the
    # other; communicate() would reap the child itself and lose its rusage, hence wait4.
    with tempfile.TemporaryFile(mode="w+") as errf:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True, env=env)
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        errf.seek(0)
        err = errf.read()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}\n{out}{err}")
    lines = [line for line in out.splitlines() if line.strip().startswith("{")]
    if not lines:
        raise RuntimeError(f"{' '.join(cmd)} printed no JSON line\n{out}{err}")
    return json.loads(lines[-1]), ru.ru_maxrss / 2**20, out, err  # ru_maxrss is KiB on Linux


def torch_worker(a):
    """Runs inside the fresh subprocess: trains the torch twin and prints one JSON line."""
    import resource

    import torch

    sys.path.insert(0, TORCH_REF)
    import agpt_torch as at

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    args = at.Args.flavor(a.flavor)
    model = at.AgptTorch(args, torch.float32)
    model.init_normal(0.02, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=8e-4, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1)
    g = torch.Generator().manual_seed(1)

    def step():
        x = torch.randint(0, args.vocab, (a.batch, a.seq), generator=g)
        y = torch.randint(0, args.vocab, (a.batch, a.seq), generator=g)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model.loss(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return time.perf_counter() - t0

    for _ in range(a.warmup):
        step()
    times = [step() for _ in range(a.steps)]
    med = statistics.median(times)
    tokens = a.batch * a.seq
    flops = at.flops_per_token(args, a.seq) * tokens
    print(json.dumps({
        "impl": "torch",
        "flavor": a.flavor,
        "params": at.num_params(args),
        "batch": a.batch,
        "seq": a.seq,
        "tok_per_s": tokens / med,
        "tflops": flops / med / 1e12,
        "mfu": None,  # needs a peak; filled in from agpt's measured peak when both run
        "step_time_s": med,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agpt", help="path to the agpt binary (omit: torch only)")
    ap.add_argument("--flavor", default="debugmodel")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (torch side)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch-python", default="/usr/bin/python3",
                    help="interpreter that imports torch (Debian's python3-torch)")
    ap.add_argument("--worker", choices=["torch"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker == "torch":
        torch_worker(a)
        return 0

    env = thread_env(a.threads)
    results = {}
    if a.agpt:
        cmd = [a.agpt, "bench", "--model.flavor", a.flavor, "--training.local_batch_size",
               str(a.batch), "--training.seq_len", str(a.seq), "--steps", str(a.steps)]
        res, rss, _, _ = run_child(cmd, env)
        res["impl"] = "agpt"
        res["peak_rss_gib_wait4"] = rss
        results["agpt"] = res
        print(json.dumps(res), flush=True)

    cmd = [a.torch_python, os.path.abspath(__file__), "--worker", "torch", "--flavor", a.flavor,
           "--batch", str(a.batch), "--seq", str(a.seq), "--steps", str(a.steps), "--warmup",
           str(a.warmup), "--threads", str(a.threads)]
    res, rss, _, _ = run_child(cmd, env)
    res["peak_rss_gib_wait4"] = rss
    ag = results.get("agpt")
    if ag and ag.get("mfu") and ag.get("tflops"):
        res["mfu"] = res["tflops"] * ag["mfu"] / ag["tflops"]  # same peak as agpt measured
    results["torch"] = res
    print(json.dumps(res), flush=True)

    if ag:
        def ratio(k):
            return ag[k] / res[k] if ag.get(k) and res.get(k) else float("nan")

        print(f"agpt/torch: tok/s x{ratio('tok_per_s'):.2f}, "
              f"peak RSS x{ratio('peak_rss_gib'):.2f} "
              f"(agpt {ag.get('peak_rss_gib', float('nan')):.3f} GiB, "
              f"torch {res['peak_rss_gib']:.3f} GiB), "
              f"step time {ag['step_time_s'] * 1e3:.1f} ms vs {res['step_time_s'] * 1e3:.1f} ms "
              f"[{a.flavor}, B={a.batch}, T={a.seq}, {a.threads} threads]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
