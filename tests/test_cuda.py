"""CUDA-only behaviour: graph capture with new data and lengths, streams, device guard.
The correctness suites in test_fwd.py / test_update.py also run on CUDA (device param)."""

import pytest
import torch
from causal_conv1d_kernels import (
    causal_conv1d_fn,
    causal_conv1d_update,
    has_cuda_backend,
    set_pdl,
)
from causal_conv1d_kernels.testing.reference import causal_conv1d_fn_ref, causal_conv1d_update_ref
from helpers import BF16, F32, assert_close, cumulative

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and has_cuda_backend()),
    reason="needs a GPU and the CUDA backend",
)


def test_graph_capture_replays_with_new_data_and_lengths():
    """Both ops captured once; replays with new x, new sequence lengths, new indices and new
    states in the same buffers match the reference: nothing about the data is baked in."""
    dim, width, max_tokens, batch, lines = 256, 4, 300, 4, 8
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.empty(max_tokens, dim, device="cuda", dtype=BF16).t()
    weight = torch.randn(dim, width, device="cuda", dtype=BF16, generator=g)
    bias = torch.randn(dim, device="cuda", dtype=BF16, generator=g)
    states = torch.empty(lines, dim, width - 1, device="cuda", dtype=F32)
    qsl = torch.empty(batch + 1, dtype=torch.int32, device="cuda")
    idx = torch.empty(batch, dtype=torch.int64, device="cuda")
    init = torch.empty(batch, dtype=torch.bool, device="cuda")
    token = torch.empty(batch, dim, device="cuda", dtype=BF16)

    def fill(lengths, seed):
        gen = torch.Generator(device="cuda").manual_seed(seed)
        x.copy_(torch.randn(x.shape, device="cuda", generator=gen).to(BF16))
        states.copy_(torch.randn(states.shape, device="cuda", generator=gen))
        qsl.copy_(cumulative(lengths, torch.int32, "cuda"))
        idx.copy_(torch.randperm(lines, device="cuda", generator=gen)[:batch])
        init.copy_(torch.rand(batch, device="cuda", generator=gen) > 0.5)
        token.copy_(torch.randn(token.shape, device="cuda", generator=gen).to(BF16))

    def step():
        y = causal_conv1d_fn(x, weight, bias, states, qsl, idx, init)
        z = causal_conv1d_update(token, states, weight, bias, "silu", conv_state_indices=idx)
        return y, z

    fill([100, 0, 150, 50], seed=1)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()  # warm up outside the graph
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y, z = step()

    for seed, lengths in [(2, [1, 299, 0, 0]), (3, [64, 64, 64, 108]), (4, [0, 0, 0, 300])]:
        fill(lengths, seed)
        before = states.clone()
        expected_y, mid = causal_conv1d_fn_ref(x, weight, bias, before, qsl, idx, init)
        expected_z, after = causal_conv1d_update_ref(
            token, mid, weight, bias, "silu", conv_state_indices=idx
        )
        graph.replay()
        torch.cuda.synchronize()
        assert_close(y, expected_y)
        assert_close(z, expected_z)
        assert torch.equal(states, after)


def test_runs_on_the_current_stream():
    dim, width = 128, 4
    x = torch.randn(40, dim, device="cuda").t()
    weight = torch.randn(dim, width, device="cuda")
    qsl = torch.tensor([0, 40], dtype=torch.int32, device="cuda")
    expected, _ = causal_conv1d_fn_ref(x, weight, None, None, qsl)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(10_000_000)  # the stream is busy: a launch elsewhere would race
        out = causal_conv1d_fn(x, weight, None, None, qsl)
    side.synchronize()
    assert_close(out, expected)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_tensors_on_a_non_default_device():
    dim, width = 64, 3
    x = torch.randn(2, dim, 5, device="cuda:1")
    state = torch.randn(2, dim, width - 1, device="cuda:1")
    weight = torch.randn(dim, width, device="cuda:1")
    expected, expected_state = causal_conv1d_update_ref(x, state, weight, None, "silu")
    out = causal_conv1d_update(x, state, weight, None, "silu")
    assert out.device == torch.device("cuda:1")
    assert_close(out, expected)
    assert torch.equal(state, expected_state)


def test_graph_of_a_speculative_decode_step_replays_with_new_acceptances_and_lengths():
    """vLLM's spec-decode step (varlen rows, num_accepted_tokens, engine buffers longer than
    the batch, null-block padding) captured once and replayed with new tokens, lengths,
    acceptances and lines in the same buffers."""
    from causal_conv1d_kernels import vllm
    from causal_conv1d_kernels.testing.reference import vllm_update_ref

    dim, width, lmax, batch, lines, slots = 256, 4, 4, 6, 12, 9
    state_len = width - 1 + lmax - 1
    g = torch.Generator(device="cuda").manual_seed(0)
    weight = torch.randn(dim, width, device="cuda", dtype=BF16, generator=g)
    bias = torch.randn(dim, device="cuda", dtype=BF16, generator=g)
    states = torch.empty(lines, dim, state_len, device="cuda", dtype=F32)
    x = torch.empty(batch * lmax, dim, device="cuda", dtype=BF16)
    qsl = torch.empty(batch + 1, dtype=torch.int32, device="cuda")
    idx = torch.empty(slots, dtype=torch.int32, device="cuda")
    accepted = torch.empty(slots, dtype=torch.int32, device="cuda")

    def fill(lengths, seed):
        gen = torch.Generator(device="cuda").manual_seed(seed)
        x.copy_(torch.randn(x.shape, device="cuda", generator=gen).to(BF16))
        states.copy_(torch.randn(states.shape, device="cuda", generator=gen))
        qsl.copy_(cumulative(lengths, torch.int32, "cuda"))
        idx.copy_(torch.randperm(lines, device="cuda", generator=gen)[:slots].int())
        idx[seed % batch] = 0  # the null block
        accepted.copy_(torch.randint(1, lmax + 1, (slots,), device="cuda", generator=gen))

    def step():
        return vllm.causal_conv1d_update(
            x, states, weight, bias, "silu", idx, accepted, qsl, lmax, out=out
        )

    out = torch.zeros_like(x)
    fill([4, 4, 4, 4, 4, 4], seed=1)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()

    for seed, lengths in [
        (2, [1, 4, 0, 2, 3, 4]),
        (3, [4, 4, 4, 4, 4, 4]),
        (4, [0, 0, 1, 0, 0, 1]),
    ]:
        fill(lengths, seed)
        out.zero_()
        expected, after = vllm_update_ref(x, states, weight, bias, "silu", idx, accepted, qsl, lmax)
        graph.replay()
        torch.cuda.synchronize()
        used = int(qsl[-1])
        assert_close(out[:used], expected[:used])
        assert torch.equal(states, after)


@pytest.fixture
def pdl():
    """Sets PDL for one test and restores the process setting after it."""
    previous = set_pdl(True)
    yield set_pdl
    set_pdl(previous)


@pytest.mark.parametrize("enabled", [True, False])
def test_pdl_results_are_identical_after_a_slow_producer(pdl, enabled):
    """Each op right after a long kernel that writes its inputs (x, the states, the cache
    indices), eagerly and replayed from a CUDA graph, with PDL on and off: the outputs and the
    cache equal the reference's and are the same bits either way. Without the kernels' wait
    for their producers, PDL would let them read the inputs before the producer wrote them."""
    pdl(enabled)
    dim, width, lines = 1024, 4, 16
    g = torch.Generator(device="cuda").manual_seed(5)
    weight = torch.randn(dim, width, device="cuda", dtype=BF16, generator=g)
    bias = torch.randn(dim, device="cuda", dtype=BF16, generator=g)
    base_x = torch.randn(700, dim, device="cuda", generator=g).to(BF16).t()  # channel-last
    base_token = torch.randn(8, dim, device="cuda", generator=g).to(BF16)
    base_states = torch.randn(lines, dim, width - 1, device="cuda", generator=g)
    qsl = cumulative([300, 0, 250, 150], torch.int32, "cuda")
    init = torch.tensor([True, False, True, False], device="cuda")
    big = torch.randn(32 << 20, device="cuda", generator=g)
    x, token = torch.empty_like(base_x), torch.empty_like(base_token)
    states = torch.empty_like(base_states)
    idx = torch.empty(8, dtype=torch.int64, device="cuda")
    y = torch.empty_like(x)

    def step(scale):
        # A long producer first (its last kernels write the inputs), then each op at once.
        big.mul_(1.0)
        x.copy_(base_x * scale)
        token.copy_(base_token * scale)
        states.copy_(base_states * scale)
        idx.copy_(torch.arange(8, device="cuda").flip(0) * 2)
        causal_conv1d_fn(x, weight, bias, states, qsl, idx[:4], init, out=y)
        big.mul_(1.0)
        token.mul_(scale)
        return causal_conv1d_update(token, states, weight, bias, "silu", conv_state_indices=idx)

    def expected(scale):
        s = (base_states * scale).to(F32)
        ref_y, s = causal_conv1d_fn_ref(base_x * scale, weight, bias, s, qsl, idx[:4], init)
        t = ((base_token * scale).to(BF16) * scale).to(BF16)
        ref_z, s = causal_conv1d_update_ref(t, s, weight, bias, "silu", conv_state_indices=idx)
        return ref_y, ref_z, s

    z = step(1.0)
    ref_y, ref_z, ref_s = expected(1.0)
    assert_close(y, ref_y)
    assert_close(z, ref_z)
    assert torch.equal(states, ref_s)
    eager = (y.clone(), z.clone(), states.clone())

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        z_graph = step(-0.5)
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    ref_y, ref_z, ref_s = expected(-0.5)
    assert_close(y, ref_y)
    assert_close(z_graph, ref_z)
    assert torch.equal(states, ref_s)
    z = step(1.0)
    assert torch.equal(y, eager[0]) and torch.equal(z, eager[1]) and torch.equal(states, eager[2])
