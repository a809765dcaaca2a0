"""Hugging Face export against an independent PyTorch Llama (hf_llama_ref.py).

Usage: test_hf_export.py path/to/agpt path/to/agpt_hf_logits
Trains three tiny runs with the agpt program (a GQA flavor, a plain multi-head one and a QK-norm
one, which exports as Qwen3; 2 steps each),
exports each with `agpt export --format hf`, rebuilds LlamaForCausalLM from the folder alone and
compares (1) the logits of a token sequence with agpt_hf_logits' and (2) the greedy tokens and
their log-probabilities printed by `agpt generate --temperature 0 --output ids --logprobs`.
Exit 77 when torch is not importable (reported as skipped).
"""

import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError:
    print("torch not available; skipping")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agpt_torch import load_safetensors  # noqa: E402
from hf_llama_ref import HfLlama  # noqa: E402

TOL = 1e-4
PROMPT = [256] + list(b"To be, or not to be")  # <|bos|> then bytes


def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"FAILED ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return r.stdout


def check_flavor(agpt, dump, work, flavor):
    name = f"run_{flavor}"
    run(agpt, "train", "--job.dump_folder", work, "--job.name", name, "--model.flavor", flavor,
        "--training.steps", "2", "--training.seq_len", "32", "--training.local_batch_size", "2",
        "--checkpoint.enable", "true", "--validation.enable", "false",
        "--sample.max_new_tokens", "0", "--training.threads", "2")
    rundir = os.path.join(work, name)
    hf = os.path.join(work, f"hf_{flavor}")
    run(agpt, "export", "--run", rundir, "--format", "hf", "--out", hf)
    ref = HfLlama(hf)
    cfg = ref.cfg
    print(f"{flavor}: {cfg['architectures'][0]}, "
          f"heads {cfg['num_attention_heads']}/{cfg['num_key_value_heads']}, "
          f"dim {cfg['hidden_size']}, vocab {cfg['vocab_size']}")
    assert ref.qwen3 == flavor.endswith("_qknorm")

    # (1) logits of a fixed sequence
    out = os.path.join(work, f"logits_{flavor}.safetensors")
    run(dump, "--run", rundir, "--ids", " ".join(map(str, PROMPT)), "--out", out)
    ours = torch.from_numpy(load_safetensors(out)[0]["logits"]).double()
    theirs = ref.logits(PROMPT)
    err = (ours - theirs).abs().max().item()
    print(f"  logits max |diff| {err:.2e} (scale {theirs.abs().max().item():.2f})")
    assert err < TOL, f"{flavor}: logits differ by {err}"

    # (2) greedy generation with the KV cache, and its log-probabilities
    n_new = 12
    text = run(agpt, "generate", "--run", rundir, "--prompt-ids", " ".join(map(str, PROMPT)),
               "--max-new-tokens", str(n_new), "--temperature", "0", "--output", "ids",
               "--logprobs", "--threads", "2")
    lines = text.strip().split("\n")
    ids = [int(t) for t in lines[0].split()]
    assert ids[: len(PROMPT)] == PROMPT, "the ids line must start with the prompt"
    gen = ids[len(PROMPT):]
    assert len(gen) == n_new and len(lines) == 1 + n_new, text
    logp = torch.log_softmax(ref.logits(ids), dim=-1)
    worst = 0.0
    for i, line in enumerate(lines[1:]):
        tok, lp = line.split()
        assert int(tok) == gen[i]
        row = logp[len(PROMPT) - 1 + i]
        best = row.max().item()
        # Greedy must pick the reference's argmax, up to a tie within the tolerance.
        assert row[gen[i]].item() > best - TOL, f"{flavor}: token {i} is not the argmax"
        worst = max(worst, abs(float(lp) - row[gen[i]].item()))
    print(f"  generate: {n_new} greedy tokens agree, logprob max |diff| {worst:.2e}")
    assert worst < TOL, f"{flavor}: logprobs differ by {worst}"


def main():
    agpt, dump = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as work:
        # GQA 4/2, plain multi-head 6/6, and QK-norm (a Qwen3ForCausalLM folder)
        for flavor in ["tiny", "small", "tiny_qknorm"]:
            check_flavor(agpt, dump, work, flavor)
    print("test_hf_export: OK")


if __name__ == "__main__":
    main()
