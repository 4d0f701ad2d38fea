"""The training benchmark's own logic on tiny shapes (its timings are never checked: a busy
machine can give anything): every case and phase gives a row, each implementation's
gradients agree with the float64 reference, and a library without a call is left out."""

import os

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def bench_train(monkeypatch):
    monkeypatch.syspath_prepend(ROOT)
    from benchmarks import bench_train

    TrainCase = bench_train.TrainCase
    monkeypatch.setitem(
        bench_train.CASES,
        "cpu",
        [
            TrainCase(2, 40, 24, "channel_last"),
            TrainCase(2, 40, 24, "channel_first", width=3),
            TrainCase(3, 40, 24, "channel_last", packed=True),
            TrainCase(2, 40, 24, "channel_last", width=2, states=True),
        ],
    )
    return bench_train


def test_train_benchmark_rows_and_gradients(bench_train):
    rows = bench_train.run("cpu", torch.float32, min_run_time=0.001, threads=1)
    cases = [c.name for c in bench_train.CASES["cpu"]]
    assert [r["case"] for r in rows] == [f"{p} {c}" for c in cases for p in ("fwd", "fwd+bwd")]
    for row in rows:
        assert not any(k.endswith("_error") for k in row), row
        assert row["ours_us"] > 0 and row["copy_us"] > 0
        plain = "seq_idx" not in row["case"] and "states" not in row["case"]
        assert ("torch_us" in row) == plain, row  # plain torch has no packed or stateful call
        if row["case"].startswith("fwd+bwd"):
            # fp32 against the float64 reference: dx, dweight, dbias (and dinitial_states)
            assert row["ours_rel_err"] < 1e-5, row
            if plain:
                assert row["torch_rel_err"] < 1e-5, row


def test_train_benchmark_packed_ids_cut_every_row(bench_train):
    g = torch.Generator().manual_seed(0)
    ids = bench_train._packed_ids(4, 300, g)
    assert ids.dtype == torch.int32 and ids.shape == (4, 300)
    steps = ids[:, 1:] - ids[:, :-1]
    assert bool(((steps == 0) | (steps == 1)).all()) and bool((ids[:, 0] == 0).all())
    assert bool((ids[:, -1] >= 1).all()), "every row packs more than one sequence"
