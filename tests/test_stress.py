"""Stress (issue 5): long runs of random prefill and decode calls on one shared cache, the
cache checked bit-exactly after every call against a reference cache kept alongside; CPU
calls from several Python threads at once and CUDA calls on two streams, each on its own
cache lines.

CAUSAL_CONV1D_STRESS_CALLS sets the number of calls per run (2000 by default: a small budget
for CI; 10000 for a full run).
"""

from __future__ import annotations

import os
import threading

import pytest
import torch
from causal_conv1d_kernels import causal_conv1d_fn, causal_conv1d_update
from causal_conv1d_kernels.testing.reference import causal_conv1d_fn_ref, causal_conv1d_update_ref
from helpers import BF16, F16, F32, assert_close, cumulative, devices

CALLS = int(os.environ.get("CAUSAL_CONV1D_STRESS_CALLS", "2000"))
DIM, NUM_LINES = 40, 24


class Session:
    """A cache, the reference's copy of it, and random calls on chosen lines."""

    def __init__(self, device, mix, state_len, seed):
        self.device, self.mix, self.state_len = device, mix, state_len
        self.g = torch.Generator().manual_seed(seed)
        x_dtype, w_dtype, s_dtype = mix
        self.cache = torch.randn(NUM_LINES, DIM, state_len, generator=self.g).to(device, s_dtype)
        self.expected = self.cache.clone()
        # Filters of every width the state allows; each call picks one.
        self.filters = {
            w: (
                torch.randn(DIM, w, generator=self.g).to(device, w_dtype),
                torch.randn(DIM, generator=self.g).to(device, w_dtype),
            )
            for w in range(2, min(8, state_len + 1) + 1)
        }

    def randint(self, lo, hi) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=self.g))

    def rows(self, pool):
        """A duplicate-free random subset of pool, with a pad id now and then."""
        count = self.randint(0, min(6, len(pool)))
        picked = [pool[i] for i in torch.randperm(len(pool), generator=self.g)[:count].tolist()]
        return [-1 if self.randint(0, 9) == 0 else line for line in picked]

    def call(self, pool):
        """One random prefill or decode over lines of pool; returns (out, expected out)."""
        width = self.randint(2, max(self.filters))
        weight, bias = self.filters[width]
        activation = "silu" if self.randint(0, 1) else None
        lines = self.rows(pool)
        indices = torch.tensor(lines, dtype=torch.int64, device=self.device)
        x_dtype = self.mix[0]
        if self.randint(0, 1):
            lengths = [self.randint(0, 20) for _ in lines]
            x = torch.randn(sum(lengths), DIM, generator=self.g).to(self.device, x_dtype).t()
            args = dict(
                x=x,
                weight=weight,
                bias=bias,
                query_start_loc=cumulative(lengths, torch.int32, self.device),
                cache_indices=indices,
                has_initial_state=torch.rand(len(lines), generator=self.g).to(self.device) < 0.7,
                activation=activation,
            )
            expected, self.expected = causal_conv1d_fn_ref(**args, conv_states=self.expected)
            out = causal_conv1d_fn(**args, conv_states=self.cache)
        else:
            seqlen = self.randint(1, 4)
            x = torch.randn(len(lines), DIM, seqlen, generator=self.g).to(self.device, x_dtype)
            args = dict(
                x=x, weight=weight, bias=bias, activation=activation, conv_state_indices=indices
            )
            if self.randint(0, 2) == 0:  # now and then a ring buffer step
                positions = torch.randint(0, 4 * self.state_len, (len(lines),), generator=self.g)
                args["cache_seqlens"] = positions.to(self.device)
            expected, self.expected = causal_conv1d_update_ref(**args, conv_state=self.expected)
            out = causal_conv1d_update(**args, conv_state=self.cache)
        return out, expected

    def check_lines(self, pool, step):
        for line in pool:
            assert torch.equal(self.cache[line], self.expected[line]), (
                f"line {line} differs from the reference after call {step}"
            )


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize(
    "mix,state_len", [((BF16, BF16, BF16), 3), ((F32, F32, F32), 7), ((F16, BF16, F32), 5)]
)
def test_interleaved_calls_on_one_cache(device, mix, state_len):
    session = Session(device, mix, state_len, seed=state_len)
    pool = list(range(NUM_LINES))
    for step in range(CALLS):
        out, expected = session.call(pool)
        assert_close(out, expected)
        assert torch.equal(session.cache, session.expected), f"cache differs after call {step}"


def test_cpu_calls_from_several_threads():
    """Four Python threads share one cache, each on its own lines."""
    threads, errors = 4, []
    session = Session("cpu", (BF16, BF16, F32), 4, seed=11)
    before = session.cache.clone()
    pools = [list(range(t, NUM_LINES - 4, threads)) for t in range(threads)]  # last 4: unused
    sessions = []
    for t in range(threads):
        s = Session("cpu", (BF16, BF16, F32), 4, seed=100 + t)
        s.cache = session.cache  # shared
        s.expected = session.cache.clone()
        sessions.append(s)

    def run(t):
        try:
            for step in range(CALLS // threads):
                out, expected = sessions[t].call(pools[t])
                assert_close(out, expected)
                sessions[t].check_lines(pools[t], step)
        except Exception as e:  # noqa: BLE001 (reported below, on the main thread)
            errors.append(e)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors[0]
    assert torch.equal(session.cache[-4:], before[-4:]), "lines no thread uses changed"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_calls_on_two_streams():
    """Calls alternate between two streams, each on its own lines of one shared cache."""
    from causal_conv1d_kernels import has_cuda_backend

    if not has_cuda_backend():
        pytest.skip("needs the CUDA backend")
    streams = [torch.cuda.Stream(), torch.cuda.Stream()]
    shared = Session("cuda", (BF16, BF16, BF16), 3, seed=5)
    sessions, results = [], []
    for s in range(2):
        session = Session("cuda", (BF16, BF16, BF16), 3, seed=50 + s)
        session.cache = shared.cache
        session.expected = shared.cache.clone()
        sessions.append(session)
    torch.cuda.synchronize()
    pools = [list(range(0, NUM_LINES, 2)), list(range(1, NUM_LINES, 2))]
    for step in range(CALLS):
        s = step % 2
        with torch.cuda.stream(streams[s]):
            results.append(sessions[s].call(pools[s]))
    torch.cuda.synchronize()
    for out, expected in results:
        assert_close(out, expected)
    for s in range(2):
        sessions[s].check_lines(pools[s], CALLS)
