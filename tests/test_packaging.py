"""What a user runs: the module's self-check, the ISA switch, the CMake build, the README."""

import math
import os
import shutil
import subprocess
import sys

import causal_conv1d_kernels
import pytest
import torch
from helpers import HANG_GUARD_S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python(*args, env=None, cwd=None):
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        env={**os.environ, **(env or {})},
        cwd=cwd or ROOT,
    )


def test_main_module_runs_self_check_and_benchmark():
    from causal_conv1d_kernels.testing import benchmark

    result = python("-m", "causal_conv1d_kernels", "--min-run-time", "0.02")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "self-check passed"
    assert "FAILED" not in result.stdout
    checks = [line for line in lines if "max |out - ref|" in line]
    # One block of checks per device the self-check runs on (the CPU, then CUDA if present).
    per_device = ["prefill", "decode", "decode", "decode"]
    assert [c.split()[0] for c in checks] in (per_device, per_device * 2)
    assert all("within tolerance" in c and "cache bit-exact" in c for c in checks)
    assert any("<= 1.6e-02 + 1.6e-02 * |ref|" in line for line in lines)
    # The CPU table: a header saying what the numbers mean, one row per case, 7 columns.
    start = next(i for i, line in enumerate(lines) if line.startswith("Timing on"))
    assert "lower is better" in lines[start] and "x = time / time of a copy" in lines[start]
    assert "threads" in lines[start] or "thread," in lines[start]
    assert lines[start + 1].split() == [
        "case",
        "copy",
        "ours",
        "x",
        "plain",
        "torch",
        "x",
        "spread",
    ]
    for case, row in zip(benchmark.CPU_CASES, lines[start + 2 :]):
        assert row.startswith(case.name)
        numbers = row[len(case.name) :].split()
        assert len(numbers) == 6 and numbers[-1].endswith("%")
        # Timings of a busy machine can be anything (a descheduled copy makes a ratio print
        # as 0.00): the table's form is checked, never its values.
        assert all(math.isfinite(float(v)) and float(v) >= 0 for v in numbers[:-1])
        assert float(numbers[-1].rstrip("%")) >= 0
    warnings = [line for line in lines if line.startswith("WARNING:")]
    assert all("busy" in w or "descheduled" in w for w in warnings)


def test_benchmark_without_matplotlib_writes_tables_and_exits_0(tmp_path):
    """`python -m benchmarks bench` where matplotlib cannot be imported (a stand-in package
    that raises ImportError hides any installed one): the table and JSON, a one-line note
    naming the extra that brings the plot, exit status 0."""
    hidden = tmp_path / "hide" / "matplotlib"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    out = tmp_path / "out"
    path = os.pathsep.join([str(tmp_path / "hide"), ROOT, os.environ.get("PYTHONPATH", "")])
    command = "-m benchmarks bench --device cpu --min-run-time 0.01 --no-peers --name t".split()
    only = ["--only", "small 4x128", "--out-dir", str(out)]
    result = python(*command, *only, env={"PYTHONPATH": path})
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "t.md").exists() and (out / "t.json").exists() and not (out / "t.png").exists()
    assert "small 4x128, D 5376" in (out / "t.md").read_text()
    notes = [line for line in result.stdout.splitlines() if "matplotlib" in line]
    assert len(notes) == 1 and "pip install .[bench]" in notes[0], result.stdout


def test_self_check_busy_warnings():
    """The warning logic of the timing table, on synthetic timings."""
    from causal_conv1d_kernels.__main__ import busy_warnings, stable_rounds

    assert busy_warnings({"a": 0.05, "b": 0.2}, threads=2, copy_1t_us=10, copy_nt_us=8) == []
    noisy = busy_warnings({"a": 0.05, "b": 1.3})
    assert len(noisy) == 1 and "130%" in noisy[0] and "(b)" in noisy[0] and "busy" in noisy[0]
    slow = busy_warnings({"a": 0.0}, threads=16, copy_1t_us=10, copy_nt_us=40)
    assert len(slow) == 1 and "16 threads took 4.0x" in slow[0]
    assert busy_warnings({"a": 0.0}, threads=1, copy_1t_us=10, copy_nt_us=40) == []
    # Rounds stop once three in a row agree within 10%, and never run past six.
    steady = iter([{"t": v} for v in (50, 10, 10.5, 10.2, 99)])
    assert [r["t"] for r in stable_rounds(lambda: next(steady))] == [50, 10, 10.5, 10.2]
    jumpy = iter([{"t": v} for v in (1, 2, 1, 2, 1, 2, 1)])
    assert len(stable_rounds(lambda: next(jumpy))) == 6


def test_unknown_cpu_isa_is_a_clear_error():
    code = (
        "import torch, causal_conv1d_kernels as c\n"
        "x = torch.randn(4, 3); w = torch.randn(4, 4)\n"
        "c.causal_conv1d_fn(x, w, None, None, torch.tensor([0, 3]))\n"
    )
    result = python("-c", code, env={"CAUSAL_CONV1D_CPU_ISA": "avx9000"})
    assert result.returncode != 0
    assert "CAUSAL_CONV1D_CPU_ISA=avx9000" in result.stderr and "portable" in result.stderr


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_cmake_build_registers_the_ops(tmp_path):
    build = tmp_path / "build"
    configure = subprocess.run(
        ["cmake", "-S", ROOT, "-B", str(build), f"-DPython3_EXECUTABLE={sys.executable}"],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = subprocess.run(
        ["cmake", "--build", str(build), "-j", str(os.cpu_count() or 1)],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert compiled.returncode == 0, compiled.stdout[-4000:] + compiled.stderr[-4000:]
    # An ISA object exports its kernel-set function and nothing else: no inline
    # function compiled with that ISA's flags can be picked by the linker for
    # code that runs on CPUs without it.
    objects = list(build.rglob("kernel_*.cpp.o"))
    assert objects, "no kernel objects in the CMake build"
    if shutil.which("nm"):
        for obj in objects:
            symbols = subprocess.run(
                ["nm", "-C", "--defined-only", str(obj)], capture_output=True, text=True
            ).stdout.splitlines()
            exported = [
                line.split(" ", 2)[2] for line in symbols if line.split(" ")[1] in "TDBRWVu"
            ]
            assert len(exported) == 1 and exported[0].endswith("_kernels()"), (obj.name, exported)
    library = build / "libcausal_conv1d_kernels.so"
    code = (
        "import torch\n"
        f"torch.ops.load_library({str(library)!r})\n"
        "x = torch.randn(6, 5); w = torch.randn(6, 3)\n"
        "out = torch.ops.causal_conv1d.causal_conv1d_fwd(x, w, None, None, torch.tensor([0, 5]),"
        " None, None, False, -1)\n"
        "expected = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (2, 0))[None],"
        " w[:, None], groups=6)[0]\n"
        "torch.testing.assert_close(out, expected)\n"
        "print('ok')\n"
    )
    result = python("-c", code, cwd=str(tmp_path))
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_readme_test_command_is_what_ci_runs():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read()
    command = next(line for line in ci.splitlines() if line.startswith("python3 -m venv"))
    assert command in readme, "the README's test command and .ci/run differ"
    assert "pytest" in command


def test_version_matches_distribution():
    import importlib.metadata

    import causal_conv1d_kernels

    assert importlib.metadata.version("causal-conv1d-kernels") == causal_conv1d_kernels.__version__
    assert torch.ops.causal_conv1d.cpu_isa() == causal_conv1d_kernels.cpu_isa()


def package_copy(tmp_path, torch_version=None, drop_extension=False, abi="classic"):
    """The installed package copied to tmp_path (compiled extension included), optionally
    with a faked build record or without its extension."""
    import causal_conv1d_kernels

    src = os.path.dirname(causal_conv1d_kernels.__file__)
    dst = tmp_path / "causal_conv1d_kernels"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    if torch_version is not None:
        (dst / "_build_info.py").write_text(f"TORCH_VERSION = {torch_version!r}\nABI = {abi!r}\n")
    if drop_extension:
        for so in dst.glob("_C*"):
            so.unlink()
    return tmp_path


def import_from(path, env=None):
    return python(
        "-c", "import causal_conv1d_kernels", env={"PYTHONPATH": str(path), **(env or {})}, cwd=path
    )


def test_import_with_another_torch_is_a_clear_error(tmp_path):
    """A build record naming a torch the build cannot serve (classic: any other torch, what
    `pip install .` with build isolation left beside a different installed torch; stable ABI: a
    later torch than the running one): ImportError naming both versions and the command."""
    abi = causal_conv1d_kernels.abi()
    other = "99.0.0+fake" if abi == "stable" else "2.13.0+cpu-fake"
    result = import_from(package_copy(tmp_path, torch_version=other, abi=abi))
    assert result.returncode != 0
    err = result.stderr
    assert "ImportError" in err and f"built against torch {other}" in err
    assert f"running torch {torch.__version__}" in err
    assert "pip install --no-build-isolation --force-reinstall --no-deps ." in err
    # The documented escape hatch loads the (actually matching) extension anyway.
    forced = import_from(tmp_path, env={"CAUSAL_CONV1D_SKIP_TORCH_CHECK": "1"})
    assert forced.returncode == 0, forced.stderr


def test_stable_build_loads_into_later_torch(tmp_path):
    """A stable-ABI build recorded against an older torch (2.11, the oldest it serves) imports
    and runs beside this one; a classic build recorded so refuses."""
    abi = causal_conv1d_kernels.abi()
    result = import_from(package_copy(tmp_path, torch_version="2.11.0", abi=abi))
    if abi == "stable":
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0 and "only torch 2.11.0" in result.stderr


def test_import_without_the_extension_is_a_clear_error(tmp_path):
    result = import_from(package_copy(tmp_path, drop_extension=True))
    assert result.returncode != 0
    assert "cannot load its compiled extension _C" in result.stderr
    assert "--no-build-isolation" in result.stderr


def test_import_of_a_matching_build_works(tmp_path):
    result = import_from(package_copy(tmp_path))
    assert result.returncode == 0, result.stderr


def test_readme_example_runs(tmp_path):
    """The README's first-call snippet runs as written and prints what it says."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    block = text.split("A first call, runnable as is:", 1)[1].split("```python\n", 1)[1]
    code = block.split("```", 1)[0]
    script = tmp_path / "example.py"
    script.write_text(code)
    result = python(str(script), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = code.rsplit("# ", 1)[1].strip()
    assert result.stdout.strip() == expected
