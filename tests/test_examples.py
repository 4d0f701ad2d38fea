"""The examples run as documented (skipped where what they need is missing)."""

import os
import subprocess
import sys

import pytest
from helpers import HANG_GUARD_S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_hf_mamba2_on_cpu():
    """HF transformers' Mamba2 through the Dao hook on the CPU: the same greedy tokens and
    training gradients as transformers' own torch path, and both entry points reached."""
    pytest.importorskip("transformers")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "hf_mamba2.py"), "--tokens", "16"],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "tokens identical to torch: True" in result.stdout
    assert "match" in result.stdout
