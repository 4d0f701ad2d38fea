"""The op benchmark's own logic on tiny shapes (its timings are never checked: a busy machine
can give anything): rounds keep each column's best median, and every implementation and the
copy get a column."""

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    from benchmarks import bench

    return bench


def test_rounds_keep_each_columns_best_median(bench, monkeypatch):
    from causal_conv1d_kernels.testing import benchmark

    cases = [
        benchmark.Case("tiny prefill", "fwd", 64, lengths=(5, 3)),
        benchmark.Case("tiny update", "update", 64, batch=3),
    ]
    timings = iter(range(100, 0, -1))  # every later timing is faster: the last one is kept
    seen = []

    def fake_time_us(fn, device, threads, min_run_time, info=None):
        fn()  # each implementation still runs
        value = float(next(timings))
        seen.append(value)
        return value

    monkeypatch.setattr(benchmark, "time_us", fake_time_us)
    rows = bench.run("cpu", cases, 1, 0.01, rounds=3)
    assert [r["case"] for r in rows] == ["tiny prefill", "tiny update"]
    for row in rows:
        columns = [k for k in row if k.endswith("_us")]
        assert "copy_us" in columns and "ours_us" in columns and "torch_us" in columns
        for key in columns:
            assert row[key] in seen
    # Three rounds of (copy + each implementation), the third round's value kept per column.
    per_round = len([k for k in rows[0] if k.endswith("_us")])
    assert rows[0]["copy_us"] == 100 - 2 * per_round


def test_one_round_times_each_column_once(bench, monkeypatch):
    from causal_conv1d_kernels.testing import benchmark

    calls = []
    monkeypatch.setattr(benchmark, "time_us", lambda fn, *a, **k: calls.append(fn) or 1.0)
    rows = bench.run("cpu", [benchmark.Case("tiny update", "update", 64, batch=2)], 1, 0.01)
    assert len(calls) == len([k for k in rows[0] if k.endswith("_us")])


def test_cudnn_peer_is_checked_then_called_as_daos_api(bench):
    """The cuDNN frontend peer's adapter on a stand-in with its API (ours through the Dao
    dialect, which has the same call): decode rows only, int32 indices, its own state copy;
    a peer whose outputs disagree with the reference is left out."""
    import types

    import torch
    from causal_conv1d_kernels import dao
    from causal_conv1d_kernels.testing import benchmark

    calls = []

    def update(x, conv_state, weight, bias=None, activation=None, *, conv_state_indices=None):
        calls.append(conv_state_indices.dtype)
        return dao.causal_conv1d_update(
            x, conv_state, weight, bias, activation, conv_state_indices=conv_state_indices
        )

    case = benchmark.Case("tiny update", "update", 64, batch=3)
    inputs = benchmark.make_inputs(case, "cpu")
    before = inputs["conv_state"].clone()
    impls = bench.cudnn_implementations(
        case, inputs, types.SimpleNamespace(causal_conv1d_update=update)
    )
    assert list(impls) == ["cudnn 1.32"]
    impls["cudnn 1.32"]()
    assert calls == [torch.int32, torch.int32]
    assert torch.equal(inputs["conv_state"], before), "the peer writes its own copy only"

    wrong = types.SimpleNamespace(causal_conv1d_update=lambda x, *a, **k: torch.zeros_like(x))
    assert bench.cudnn_implementations(case, inputs, wrong) == {}
    fwd = benchmark.Case("tiny prefill", "fwd", 64, lengths=(5, 3))
    assert bench.cudnn_implementations(fwd, benchmark.make_inputs(fwd, "cpu"), wrong) == {}


def test_isolated_peer_rows_merge_the_two_processes(bench, monkeypatch, tmp_path):
    """--isolate-peer: ours in one child, conv.cpp in another; the peer's column (or its
    error) joins our rows unscaled, its own copy kept beside it."""
    import json
    import types

    import torch

    runs = []

    def fake_run(argv, env, check, preexec_fn=None):
        runs.append(argv)
        out_dir, name = argv[argv.index("--out-dir") + 1], argv[argv.index("--name") + 1]
        peer = "--sglang-sdist" in argv
        assert ("--columns" in argv) == peer and ("--sglang-api" in argv) != peer
        assert argv[argv.index("--threads") + 1] == str(torch.get_num_threads())
        rows = [
            {"case": "a", "bytes": 1, "copy_us": 10.0 if peer else 5.0}
            | ({"sglang_us": 30.0} if peer else {"ours_us": 7.0, "ours sglang api_us": 8.0}),
            {"case": "b", "bytes": 1, "copy_us": 4.0}
            | ({"sglang_us": None, "sglang_error": "E"} if peer else {"ours_us": 2.0}),
        ]
        with open(f"{out_dir}/{name}.json", "w") as f:
            json.dump({"rows": rows}, f)

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    args = types.SimpleNamespace(
        cases="cpu-peer", min_run_time=0.1, rounds=2, threads=None, only=None, sglang_sdist="sd"
    )
    rows = bench.run_isolated(args, "stem")
    assert len(runs) == 2
    assert rows[0] == {
        "case": "a",
        "bytes": 1,
        "copy_us": 5.0,
        "ours_us": 7.0,
        "ours sglang api_us": 8.0,
        "sglang_us": 30.0,
        "sglang_own_copy": 10.0,
    }
    assert rows[1]["sglang_us"] is None and rows[1]["sglang_error"] == "E"
    assert "sglang_own_copy" in rows[1]


def test_kernel_set_children_get_the_threads_and_every_cpu(bench, monkeypatch):
    """--isas: each kernel set in a child of its own, told this process's thread count and
    given every CPU (a child of a process bound to CPU 0 would otherwise run one thread); its
    'ours' column joins the first run's rows scaled to that run's copy."""
    import json
    import types

    import torch

    seen = []

    def fake_run(argv, env, check, preexec_fn=None):
        seen.append((env["CAUSAL_CONV1D_CPU_ISA"], argv[argv.index("--threads") + 1], preexec_fn))
        out_dir, name = argv[argv.index("--out-dir") + 1], argv[argv.index("--name") + 1]
        copy = 10.0 if len(seen) == 1 else 20.0
        with open(f"{out_dir}/{name}.json", "w") as f:
            json.dump({"rows": [{"case": "a", "bytes": 1, "copy_us": copy, "ours_us": 4.0}]}, f)

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    args = types.SimpleNamespace(min_run_time=0.1, only=None)
    rows = bench.run_isas(args, ["avx2", "portable"], "stem")
    threads = str(torch.get_num_threads())
    assert seen == [("avx2", threads, bench._every_cpu), ("portable", threads, bench._every_cpu)]
    assert rows == [{"case": "a", "bytes": 1, "copy_us": 10.0, "avx2_us": 4.0, "portable_us": 2.0}]
