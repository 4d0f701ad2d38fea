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
