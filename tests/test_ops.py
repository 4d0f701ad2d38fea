"""Op registration: schemas, fake kernels (opcheck) and torch.compile(fullgraph=True)."""

import os
import subprocess
import sys

import causal_conv1d_kernels as ck
import pytest
import torch
from helpers import (
    BF16,
    F16,
    F32,
    assert_close,
    devices,
    fwd_case,
    fwd_op_args,
    update_case,
    update_op_args,
)

FWD_SAMPLES = [
    dict(width=4, mix=(BF16, BF16, F32)),
    dict(width=3, mix=(F32, F32, F32), x_layout="contiguous", state_layout="contiguous"),
    dict(width=4, mix=(F16, F16, F16), with_cache=False),
]
UPDATE_SAMPLES = [
    dict(width=4, mix=(BF16, BF16, BF16)),
    dict(width=5, mix=(F32, F32, F32), seqlen=3, circular=True),
    dict(width=2, mix=(F16, F32, F16), squeeze=True, with_indices=False),
]


def test_schemas_annotate_writes():
    fwd = torch.ops.causal_conv1d.causal_conv1d_fwd.default._schema
    upd = torch.ops.causal_conv1d.causal_conv1d_update.default._schema
    written = lambda s: [a.name for a in s.arguments if a.alias_info and a.alias_info.is_write]  # noqa: E731
    fwd_out = torch.ops.causal_conv1d.causal_conv1d_fwd_out.default._schema
    assert written(fwd) == ["conv_states"]
    assert written(fwd_out) == ["conv_states", "out"]
    assert written(upd) == [
        "conv_state",
        "out",
        "intermediate_conv_window",
        "retrieve_parent_token",
    ]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("sample", range(len(FWD_SAMPLES)))
def test_opcheck_fwd(device, sample):
    kwargs, _ = fwd_case(device=device, lengths=[3, 0, 9, 1], **FWD_SAMPLES[sample])
    torch.library.opcheck(torch.ops.causal_conv1d.causal_conv1d_fwd.default, fwd_op_args(kwargs))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("sample", range(len(FWD_SAMPLES)))
def test_opcheck_fwd_out(device, sample):
    kwargs, _ = fwd_case(device=device, lengths=[3, 0, 9, 1], **FWD_SAMPLES[sample])
    out = torch.empty_like(kwargs["x"])
    torch.library.opcheck(
        torch.ops.causal_conv1d.causal_conv1d_fwd_out.default, (*fwd_op_args(kwargs), out)
    )


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("sample", range(len(UPDATE_SAMPLES)))
def test_opcheck_update(device, sample):
    kwargs, _ = update_case(device=device, **UPDATE_SAMPLES[sample])
    out = torch.empty_like(kwargs["x"])
    torch.library.opcheck(
        torch.ops.causal_conv1d.causal_conv1d_update.default, update_op_args(kwargs, out)
    )


class PrefillThenDecode(torch.nn.Module):
    """What a Mamba layer does with the ops: prefill a batch, then decode one token in place."""

    def __init__(self, weight, bias):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = torch.nn.Parameter(bias, requires_grad=False)

    def forward(self, x, states, qsl, lines, has_init, token, buf):
        y = ck.causal_conv1d_fn(x, self.weight, self.bias, states, qsl, lines, has_init, out=buf)
        z = ck.causal_conv1d_update(
            token, states, self.weight, self.bias, "silu", conv_state_indices=lines, out=token
        )
        return y.sum(dim=0), z * 2


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    kwargs, _ = fwd_case(4, (F32, F32, F32), device, lengths=[5, 0, 17, 2])
    kwargs["cache_indices"] = kwargs["cache_indices"].abs()  # no padding: decode every line
    batch = 4
    token = torch.randn(batch, kwargs["x"].shape[0], device=device)
    model = PrefillThenDecode(kwargs["weight"], kwargs["bias"])
    args = (
        kwargs["x"],
        kwargs["conv_states"],
        kwargs["query_start_loc"],
        kwargs["cache_indices"],
        kwargs["has_initial_state"],
    )

    eager_states, eager_token = args[1].clone(), token.clone()
    eager = model(args[0], eager_states, *args[2:], eager_token, torch.empty_like(args[0]))
    compiled_fn = torch.compile(model, fullgraph=True, backend=backend)
    buf = torch.empty_like(args[0])
    compiled = compiled_fn(*args, token, buf)

    assert_close(compiled[0], eager[0])
    assert_close(compiled[1], eager[1])
    assert torch.equal(args[1], eager_states), "compiled call must update the cache in place"
    assert torch.equal(token, eager_token), "compiled call must write out=token in place"
    assert_close(buf.sum(dim=0), eager[0]), "compiled call must fill the prefill's out buffer"


def test_set_pdl_switches_and_returns_the_previous_setting():
    from causal_conv1d_kernels import set_pdl

    previous = set_pdl(False)
    try:
        assert set_pdl(True) is False
        assert set_pdl(True) is True
        with pytest.raises(TypeError, match="enabled"):
            set_pdl(1)
    finally:
        set_pdl(previous)


@pytest.mark.parametrize("value,expected", [("0", "False"), ("1", "True"), (None, "True")])
def test_pdl_default_follows_the_environment(value, expected):
    env = {k: v for k, v in os.environ.items() if k != "CAUSAL_CONV1D_PDL"}
    if value is not None:
        env["CAUSAL_CONV1D_PDL"] = value
    probe = "import causal_conv1d_kernels as c; print(c.set_pdl(True))"
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == expected


def test_fresh_large_outputs_reuse_freed_memory_within_the_cap():
    """Outputs of 1 MiB or more come from the CPU output pool: correct, never shared between
    live tensors, resizable within their size (and beyond it in a classic build; a stable-ABI
    build's pooled storage is torch's from_blob kind, which cannot grow); freed ones are kept
    (at most the cap) and release_cpu_pool frees them."""
    from causal_conv1d_kernels import dao, release_cpu_pool

    release_cpu_pool()
    x = torch.randn(2, 512, 600)  # 2.3 MiB of fp32
    weight, bias = torch.randn(512, 4), torch.randn(512)
    first = dao.causal_conv1d_fn(x, weight, bias, activation="silu")
    second = dao.causal_conv1d_fn(x * 2, weight, bias, activation="silu")
    assert first.data_ptr() != second.data_ptr()
    assert torch.equal(first, dao.causal_conv1d_fn(x, weight, bias, activation="silu"))
    del first, second
    freed = release_cpu_pool()
    assert freed >= 2 * x.numel() * 4
    assert release_cpu_pool() == 0
    out = dao.causal_conv1d_fn(x, weight, bias, activation="silu")
    out.resize_(1, 512, 600)  # a storage like any other within its size
    if ck.abi() == "classic":
        out.resize_(3, 512, 600)
    else:
        with pytest.raises(RuntimeError, match="not resizable"):
            out.resize_(3, 512, 600)
    for _ in range(50):  # many sizes: what stays cached is bounded by the cap (512 MiB)
        dao.causal_conv1d_fn(torch.randn(1, 512, 600 + 100 * _), weight, bias)
    assert release_cpu_pool() <= 512 << 20


def test_output_pool_can_be_turned_off():
    env = {**os.environ, "CAUSAL_CONV1D_CPU_POOL_MB": "0"}
    probe = (
        "import torch, causal_conv1d_kernels as c; from causal_conv1d_kernels import dao;"
        "o = dao.causal_conv1d_fn(torch.randn(2, 512, 600), torch.randn(512, 4)); del o;"
        "print(c.release_cpu_pool())"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "0"
