"""The benchmarks, as subcommands of one command run from the repository root:

    python -m benchmarks <subcommand> [options]    # python -m benchmarks <subcommand> --help

Every subcommand that writes results writes them through `benchmarks.report` (a markdown
table, JSON and a PNG plot under benchmarks/results/ unless --out-dir says otherwise);
`python -m benchmarks report` turns the committed results into docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# subcommand -> (module of this package, what it does)
SUBCOMMANDS = {
    "bench": ("bench", "both ops over the benchmark shapes against the copy floor and the peers"),
    "train": ("bench_train", "the Dao dialect's forward and forward + backward (training step)"),
    "vllm": ("bench_vllm", "vLLM's decode calls (speculative, varlen, plain) beside vLLM 0.33"),
    "pdl": ("bench_pdl", "GEMM -> conv -> GEMM in one CUDA graph, PDL on and off"),
    "check-peers": ("check_peers", "the Triton peers' outputs against the reference, PDL on/off"),
    "cpu-scaling": ("cpu_scaling", "CPU kernels at several thread counts, SiLU on and off"),
    "dao-layouts": ("dao_decode_layouts", "CPU decode through the Dao dialect per state layout"),
    "profile": ("profile_cuda", "chosen GPU cases run twice each, for ncu to capture"),
    "sglang": ("bench_sglang", "SGLang's conv calls beside SGLang 0.5.23's JIT and Triton kernels"),
    "sglang-peer": ("sglang_peer", "build SGLang's CPU kernel from vLLM 0.33's sdist (a peer)"),
    "sglang-cuda-peer": ("sglang_cuda_peer", "build SGLang 0.5.23's JIT CUDA and Triton kernels"),
    "report": ("report", "docs/PERFORMANCE.md from the committed results"),
}


def subcommand_parser(subcommand: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of a subcommand, its help led by the module's docstring."""
    return argparse.ArgumentParser(
        prog=f"python -m benchmarks {subcommand}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def command(subcommand: str, *args: str) -> list[str]:
    """The argv of a child process running a subcommand with this interpreter."""
    return [sys.executable, "-m", "benchmarks", subcommand, *args]


def child_env(**settings: str) -> dict:
    """This process's environment plus settings, with the repository root on PYTHONPATH so
    that a child finds this package from any working directory."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": ROOT + (os.pathsep + path if path else ""), **settings}
