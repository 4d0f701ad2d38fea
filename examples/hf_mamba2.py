"""HF transformers' Mamba2 on this library's Dao dialect: greedy generation and one training
step, compared with the same model on another causal_conv1d implementation.

    python examples/hf_mamba2.py                      # CPU: ours against transformers' torch path
    python examples/hf_mamba2.py --device cuda --reference dao   # GPU: ours against Dao's package

transformers picks its causal_conv1d implementation when its Mamba2 module is imported, so each
side runs in a process of its own: "ours" installs the hook
(``causal_conv1d_kernels.dao.install_as_causal_conv1d()``) before importing transformers; "dao"
imports the installed ``causal_conv1d`` package; "torch" hides any such package so that
transformers takes its plain PyTorch path. Each side builds the same random model (seeded),
generates --tokens tokens greedily from the same prompt, then runs one training step (loss
over the prompt, backward) and saves the tokens and every parameter's gradient; the driver
compares them. mamba_ssm, where importable (on the GPU machine: its sources on PYTHONPATH with
--stub-selective-scan), supplies the SSM kernels on both sides; without it transformers uses
its torch SSM path.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import subprocess
import sys
import tempfile
import types


def count_calls(module, calls) -> None:
    """Wraps the module's two entry points to count the calls transformers makes (the wrapper
    keeps their signatures, which transformers reads to filter keyword arguments)."""
    for name in ("causal_conv1d_fn", "causal_conv1d_update"):
        f = getattr(module, name)

        @functools.wraps(f)
        def counted(*args, _f=f, _name=name, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _f(*args, **kwargs)

        setattr(module, name, counted)


def run_side(side: str, device: str, tokens: int, out_path: str, stub_scan: bool) -> None:
    calls = {}
    if stub_scan:
        # mamba_ssm installed without its CUDA extension (MAMBA_SKIP_CUDA_BUILD=TRUE) still
        # imports it when the package loads; an empty stand-in lets its Triton kernels, which
        # transformers' Mamba2 uses, load. Mamba2 never calls the selective-scan extension.
        sys.modules.setdefault("selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    if side == "ours":
        from causal_conv1d_kernels import dao

        dao.install_as_causal_conv1d()
        count_calls(importlib.import_module("causal_conv1d"), calls)
    elif side == "dao":
        count_calls(importlib.import_module("causal_conv1d"), calls)
    elif side == "torch":
        # transformers falls back to its torch path when the import fails.
        sys.modules["causal_conv1d"] = None

    import torch
    from transformers import Mamba2Config, Mamba2ForCausalLM

    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    config = Mamba2Config(
        vocab_size=512,
        hidden_size=256,
        state_size=32,
        num_heads=8,
        head_dim=64,
        n_groups=1,
        num_hidden_layers=2,
        conv_kernel=4,
        chunk_size=32,
        expand=2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = Mamba2ForCausalLM(config).to(device=device, dtype=dtype)
    prompt = torch.randint(3, config.vocab_size, (2, 40), device=device)

    model.eval()
    with torch.no_grad():
        generated = model.generate(
            prompt, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False
        )

    model.train()
    loss = model(prompt, labels=prompt).loss
    loss.backward()
    grads = {
        name: p.grad.detach().float().cpu()
        for name, p in model.named_parameters()
        if p.grad is not None
    }
    torch.save(
        {"tokens": generated.cpu(), "loss": loss.item(), "grads": grads, "calls": dict(calls)},
        out_path,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--reference",
        default="torch",
        choices=["torch", "dao"],
        help="the other side: transformers' torch path, or Dao's installed causal_conv1d",
    )
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument(
        "--stub-selective-scan",
        action="store_true",
        help="let a mamba_ssm built without its CUDA extension import (both sides)",
    )
    parser.add_argument("--side", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        run_side(args.side, args.device, args.tokens, args.out, args.stub_selective_scan)
        return 0

    import torch

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("ours", args.reference):
            path = os.path.join(tmp, f"{side}.pt")
            cmd = [sys.executable, os.path.abspath(__file__), "--side", side, "--out", path]
            cmd += ["--device", args.device, "--tokens", str(args.tokens)]
            cmd += ["--stub-selective-scan"] if args.stub_selective_scan else []
            subprocess.run(cmd, check=True)
            results[side] = torch.load(path)
    ours, ref = results["ours"], results[args.reference]
    same_tokens = torch.equal(ours["tokens"], ref["tokens"])
    print(
        f"generated {args.tokens} tokens x {ours['tokens'].shape[0]} rows greedily on {args.device}"
    )
    print(f"tokens identical to {args.reference}: {same_tokens}")
    print(f"calls into ours (through `import causal_conv1d`): {ours['calls']}")
    routed = all(ours["calls"].get(n, 0) > 0 for n in ("causal_conv1d_fn", "causal_conv1d_update"))
    print(f"training loss: ours {ours['loss']:.6f}, {args.reference} {ref['loss']:.6f}")
    tol = 2e-2 if args.device == "cuda" else 1e-4
    worst, ok = 0.0, set(ours["grads"]) == set(ref["grads"])
    for name, g in ours["grads"].items():
        r = ref["grads"][name]
        err = float((g - r).abs().max() / r.abs().max().clamp_min(1e-12))
        worst = max(worst, err)
        ok &= err <= tol
    print(
        f"gradients of {len(ours['grads'])} parameters: worst relative error {worst:.2e} "
        f"(tolerance {tol:g}): {'match' if ok else 'MISMATCH'}"
    )
    return 0 if same_tokens and ok and routed else 1


if __name__ == "__main__":
    sys.exit(main())
