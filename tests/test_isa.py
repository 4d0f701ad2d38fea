"""CPU kernel sets: the choice from CPUID and CAUSAL_CONV1D_CPU_ISA, and the correctness suite
run once per kernel set this machine can execute (each in its own process, since the choice is
made once per process)."""

import os
import re
import subprocess
import sys

import pytest
from helpers import HANG_GUARD_S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def kernel_sets() -> list:
    """The kernel sets of csrc/cpu/kernel_sets.def, best first (the list the build reads)."""
    with open(os.path.join(ROOT, "csrc", "cpu", "kernel_sets.def")) as f:
        return re.findall(r"^CAUSAL_CONV1D_KERNEL_SET\((\w+),", f.read(), re.MULTILINE)


ISAS = kernel_sets()
SUITE = [
    "tests/test_fwd.py",
    "tests/test_update.py",
    "tests/test_vllm.py",
    "tests/test_sglang.py",
    "tests/test_sglang_engine_calls.py",
    "tests/test_dao.py",
    "tests/test_safety.py",
    "tests/test_hostile.py",
    "tests/test_fuzz.py",
    "tests/test_stress.py",
]
PROBE = "import causal_conv1d_kernels as c; print(c.cpu_isa())"


def run(args, isa):
    env = {**os.environ, "CAUSAL_CONV1D_CPU_ISA": isa}
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=HANG_GUARD_S,
    )


def available(isa) -> bool:
    result = run(["-c", PROBE], isa)
    return result.returncode == 0 and result.stdout.strip() == isa


def test_auto_picks_the_best_available():
    best = next(isa for isa in ISAS if available(isa))
    assert run(["-c", PROBE], "auto").stdout.strip() == best


def test_forcing_an_isa_this_cpu_or_build_lacks_is_a_clear_error():
    missing = [isa for isa in ISAS if not available(isa)]
    if not missing:
        pytest.skip("this machine runs every kernel set")
    result = run(["-c", PROBE], missing[0])
    assert result.returncode != 0
    assert f"CAUSAL_CONV1D_CPU_ISA={missing[0]}" in result.stderr


@pytest.mark.skipif(
    "CAUSAL_CONV1D_CPU_ISA" in os.environ, reason="this run already forces one kernel set"
)
@pytest.mark.parametrize("isa", ISAS)
def test_correctness_suite(isa):
    if not available(isa):
        pytest.skip(f"this CPU or build cannot run {isa}")
    result = run(["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *SUITE], isa)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
