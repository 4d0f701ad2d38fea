"""The run-time settings: one table (csrc/settings.cpp) that every environment read goes
through, listed by causal_conv1d_kernels.settings() and documented in the README."""

import os
import re
import subprocess
import sys

import causal_conv1d_kernels as ck
import pytest
import torch
from helpers import HANG_GUARD_S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(path: str) -> str:
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def sources(folder: str, suffixes: tuple) -> list:
    found = []
    for base, _, names in os.walk(os.path.join(ROOT, folder)):
        found += [os.path.join(base, n) for n in names if n.endswith(suffixes)]
    return found


def test_the_table_has_every_setting_once_with_a_valid_default():
    table = ck.settings()
    names = [s.name for s in table]
    assert len(names) == len(set(names)) >= 12
    for s in table:
        assert s.name.startswith("CAUSAL_CONV1D_") and s.meaning and s.read
        if "|" in s.values and s.default != "auto":
            assert s.default in s.values.split("|"), s
        elif s.values.startswith("N >= ") and s.default != "auto":
            assert int(s.default) >= int(s.values[5:]), s


def test_every_setting_is_in_the_readme():
    readme = read("README.md")
    missing = [s.name for s in ck.settings() if s.name not in readme]
    assert not missing, f"settings the README does not document: {missing}"


def test_the_cpu_isa_values_are_the_kernel_sets():
    (isa,) = [s for s in ck.settings() if s.name == "CAUSAL_CONV1D_CPU_ISA"]
    sets = re.findall(r"^CAUSAL_CONV1D_KERNEL_SET\((\w+),", read("csrc/cpu/kernel_sets.def"), re.M)
    assert isa.values.split("|") == ["auto", *sets]


def test_every_environment_read_goes_through_the_table():
    """C++ reads the environment only in settings.cpp; Python only through the table's op,
    except the loader's one setting, read before the library loads."""
    for path in sources("csrc", (".cpp", ".h", ".cu", ".cuh")):
        if not path.endswith("settings.cpp"):
            assert "getenv" not in read(path), f"{path} reads the environment itself"
    package = os.path.join("python", "causal_conv1d_kernels")
    names = {s.name for s in ck.settings()}
    for path in sources(package, (".py",)):
        text = read(path)
        reads = re.findall(r"os\.environ(?:\.get)?\(?\[?\"(\w+)\"", text)
        if path.endswith("_load.py"):
            assert reads == ["CAUSAL_CONV1D_SKIP_TORCH_CHECK"] and set(reads) <= names
        else:
            assert "os.environ" not in text and "getenv" not in text, path


def probe(env: dict, code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", f"import causal_conv1d_kernels as ck, torch\n{code}"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_values_read_as_the_table_says():
    show = "print(torch.ops.causal_conv1d.setting('CAUSAL_CONV1D_VALIDATE'))"
    assert probe({"CAUSAL_CONV1D_VALIDATE": ""}, show) == "0"  # empty: the default
    assert probe({"CAUSAL_CONV1D_VALIDATE": "1"}, show) == "1"
    listed = "print([s.value for s in ck.settings() if s.name == 'CAUSAL_CONV1D_PDL'][0])"
    assert probe({"CAUSAL_CONV1D_PDL": "0"}, listed) == "0"
    on = "print(ck._core._VALIDATE_FROM_ENV, ck._core.deterministic_requested())"
    assert probe({"CAUSAL_CONV1D_VALIDATE": "1", "CAUSAL_CONV1D_DETERMINISTIC": "1"}, on) == (
        "True True"
    )
    assert probe({"CAUSAL_CONV1D_VALIDATE": "0", "CAUSAL_CONV1D_DETERMINISTIC": ""}, on) == (
        "False False"
    )


def test_an_unknown_setting_is_a_value_error():
    with pytest.raises(ValueError, match="no setting is called CAUSAL_CONV1D_NOPE"):
        torch.ops.causal_conv1d.setting("CAUSAL_CONV1D_NOPE")
