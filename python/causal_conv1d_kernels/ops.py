"""Public wrappers of the ops: argument checks (CONTRACT 2), then one op call.

Checks that need no device sync always run and raise ``TypeError``/``ValueError`` naming the
argument. Checks that read index values (they sync with the device) run when ``validate=True``
is passed or ``CAUSAL_CONV1D_VALIDATE=1`` is set (read once, at import), and never while a CUDA
graph is being captured or ``torch.compile`` traces the call. Without them the kernels still
stay inside the tensors they were given: a cache index outside ``[0, num_cache_lines)`` is
treated as padding.

These ops have no backward pass: a call that autograd would record (grad mode on and an input
that requires grad) is refused, naming the differentiable ``causal_conv1d_kernels.dao``.
"""

from __future__ import annotations

import os
from typing import Union

import torch

PAD_SLOT_ID = -1
MAX_WIDTH = 8

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_INDEX_DTYPES = (torch.int32, torch.int64)

Activation = Union[str, bool, None]


def cpu_isa() -> str:
    """Name of the CPU kernel set this process uses (``CAUSAL_CONV1D_CPU_ISA`` forces one)."""
    return torch.ops.causal_conv1d.cpu_isa()


def release_cpu_pool() -> int:
    """Frees the memory the CPU backend keeps for large outputs; returns the bytes freed.

    A fresh output of 1 MiB or more (a prefill without ``out=``, the Dao dialect's outputs
    and input gradients) comes from a pool of blocks that outputs freed earlier left mapped,
    so that it costs no page faults; the pool holds at most ``CAUSAL_CONV1D_CPU_POOL_MB``
    MiB (512 by default, 0 turns it off) besides what live tensors hold."""
    return torch.ops.causal_conv1d.release_cpu_pool()


def set_pdl(enabled: bool) -> bool:
    """Turns programmatic dependent launch (PDL) of the CUDA kernels on or off for this
    process; returns the previous setting.

    With PDL (on by default, sm_90 and newer, CUDA 12.3+) a kernel may be launched while the
    kernel before it on the stream is finishing: its blocks start and wait on the device for
    their producers instead of waiting for the launch, which saves a few microseconds per
    call inside a model. It never changes results. ``CAUSAL_CONV1D_PDL=0`` in the environment
    turns it off from the start. A CUDA graph keeps the setting it was captured with."""
    if not isinstance(enabled, bool):
        raise TypeError(f"set_pdl: enabled must be a bool, got {type(enabled).__name__}")
    return torch.ops.causal_conv1d.set_pdl(enabled)


def has_cuda_backend() -> bool:
    """Whether the extension was built with its CUDA kernels."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(
        "causal_conv1d::causal_conv1d_fwd", "CUDA"
    )


# Read once: an environment lookup per call cost 1.7 us of a 15 us CPU decode step.
_VALIDATE_FROM_ENV = os.environ.get("CAUSAL_CONV1D_VALIDATE", "0") not in ("", "0")


def _validation_requested(validate: bool, x) -> bool:
    """Whether the value checks run: asked for, and neither a CUDA graph capture (a host read
    is not allowed there) nor torch.compile's tracing (it would be a data-dependent guard) is
    in progress."""
    if not (validate or _VALIDATE_FROM_ENV):
        return False
    if torch.compiler.is_compiling():
        return False
    return not (
        isinstance(x, torch.Tensor) and x.is_cuda and torch.cuda.is_current_stream_capturing()
    )


def _requires_grad(x, weight, bias, states) -> bool:
    """Whether any input requires grad (attribute reads inline: ~0.2 us of a decode call's
    ~6 us on the dev box, where a loop over the tensors cost ~0.35 us)."""
    try:
        return (
            x.requires_grad
            or weight.requires_grad
            or (states is not None and states.requires_grad)
            or (bias is not None and bias.requires_grad)
        )
    except AttributeError:
        return False  # not tensors: the checks name them


def _refuse_grad(op: str, **tensors) -> None:
    """Refuses a call autograd would record (the caller saw grad mode on and an input that
    requires grad): the ops have no backward, so the output would carry a graph whose
    backward leaves the inputs' gradients silently None."""
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.requires_grad:
            raise ValueError(
                f"{op}: {name} requires grad, but this op has no backward pass (it serves "
                "inference). For training use causal_conv1d_kernels.dao.causal_conv1d_fn, "
                "which is differentiable; for inference call it under torch.no_grad() or "
                "torch.inference_mode(), or pass tensors that do not require grad."
            )


def _op(name: str):
    """An op's default overload, called directly (no overload resolution per call)."""
    op = _OPS.get(name)
    if op is None:
        op = _OPS[name] = getattr(torch.ops.causal_conv1d, name).default
    return op


_OPS = {}


def _fast_path(pad_slot_id, null_block_id, check_first: bool) -> bool:
    """Whether a call may go to its op before the Python checks: the op's C++ checks (the
    same checks, all before any access to the tensors) cost nanoseconds where the Python ones
    cost ~10 us, most of a batch-1 decode step's price. The op refuses bad input with a
    RuntimeError; the Python checks then name the argument as a ValueError/TypeError (or,
    finding nothing, let the op raise its own error again). Not for scalars the op would
    take (a bool is an int to it), when the caller asks for the checks first (validation,
    vLLM's ``validate_data``), or under torch.compile's tracing."""
    return (
        type(pad_slot_id) is int  # noqa: E721
        and type(null_block_id) is int  # noqa: E721
        and not check_first
        and not _VALIDATE_FROM_ENV
        and not torch.compiler.is_compiling()
    )


def _silu(op: str, activation: Activation) -> bool:
    if activation is None or activation is False:
        return False
    if activation is True or (isinstance(activation, str) and activation in ("silu", "swish")):
        return True
    raise ValueError(
        f"{op}: activation must be None, 'silu', 'swish', True or False, got {activation!r}"
    )


def _shape(t: torch.Tensor) -> tuple:
    return tuple(t.shape)


class _Checker:
    """Sync-free argument checks for one call; every message names op and argument."""

    def __init__(self, op: str, x: torch.Tensor):
        self.op = op
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{op}: x must be a torch.Tensor, got {type(x).__name__}")
        self.device = x.device

    def tensor(self, name: str, t) -> torch.Tensor:
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{self.op}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.device != self.device:
            raise ValueError(
                f"{self.op}: {name} must be on x's device {self.device}, got {t.device}"
            )
        return t

    def floating(self, name: str, t) -> torch.Tensor:
        self.tensor(name, t)
        if t.dtype not in _FLOAT_DTYPES:
            raise TypeError(
                f"{self.op}: {name} must be float32, float16 or bfloat16, got {t.dtype}"
            )
        return t

    def index(self, name: str, t, size: int, dtypes=_INDEX_DTYPES) -> torch.Tensor:
        """A 1-D tensor of at least ``size`` entries: engines pass persistent buffers
        longer than the batch, whose entries past it are never read."""
        self.tensor(name, t)
        if t.dtype not in dtypes:
            expected = " or ".join(str(d).removeprefix("torch.") for d in dtypes)
            raise TypeError(f"{self.op}: {name} must be {expected}, got {t.dtype}")
        if t.dim() != 1 or t.shape[0] < size:
            raise ValueError(
                f"{self.op}: {name} must have shape ({size},) or be longer, got {_shape(t)}"
            )
        return t

    def query_start_loc(self, q) -> int:
        """Checks ``(batch + 1,)`` int32/int64; returns the batch."""
        self.tensor("query_start_loc", q)
        if q.dtype not in _INDEX_DTYPES:
            raise TypeError(f"{self.op}: query_start_loc must be int32 or int64, got {q.dtype}")
        self.shape("query_start_loc", q.dim() == 1 and q.shape[0] >= 1, "(batch + 1,)", q)
        return q.shape[0] - 1

    def integer(self, name: str, v) -> None:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{self.op}: {name} must be an int, got {type(v).__name__}")

    def starts_in_range(self, q, batch: int, num_tokens: int, exact_end: bool) -> None:
        """query_start_loc values (syncs): from 0, never decreasing, ending at num_tokens
        (prefill) or within it (decode, whose x may be an engine's padded buffer)."""
        q = q[: batch + 1]
        last = int(q[-1])
        bad_end = last != num_tokens if exact_end else last > num_tokens
        if int(q[0]) != 0 or bad_end or bool((q[1:] < q[:-1]).any()):
            end = f"end at num_tokens={num_tokens}" if exact_end else f"end <= {num_tokens}"
            raise ValueError(
                f"{self.op}: query_start_loc must start at 0, never decrease and {end}, "
                f"got {q.tolist()[:16]}"
            )

    def shape(self, name: str, ok: bool, expected: str, t: torch.Tensor) -> None:
        if not ok:
            raise ValueError(f"{self.op}: {name} must have shape {expected}, got {_shape(t)}")

    def channels(self, x, axis: int, layout: str, weight, states_name=None, states=None) -> int:
        """x's channel count (``x.shape[axis]``), checked against weight's and the states'
        before either is checked on its own: where they disagree, the argument most likely
        wrong is named (x when weight and the states agree on another dim or x has weight's
        dim on another axis, as an untransposed ``(num_tokens, dim)`` prefill x has), with the
        layout it must have. Returns the dim."""
        dim = x.shape[axis]
        if not (isinstance(weight, torch.Tensor) and weight.dim() == 2):
            return dim  # filter() names weight
        wanted = weight.shape[0]
        if wanted == dim:
            return dim
        state_dim = None
        if isinstance(states, torch.Tensor) and states.dim() == 3:
            state_dim = states.shape[1]
        if state_dim == dim:
            return dim  # x and the states agree: filter() names weight
        swapped = [i for i in range(x.dim()) if i != axis and x.shape[i] == wanted]
        if not swapped and state_dim != wanted:
            return dim  # nothing says x is the odd one out: filter() names weight and x's dim
        hint = ": it looks transposed; pass x.t() (a view, no copy)" if swapped else ""
        source = f"weight {_shape(weight)}"
        if state_dim == wanted:
            source += f" and {states_name} {_shape(states)}"
        raise ValueError(
            f"{self.op}: x must have shape {layout} with dim={wanted} (the dim of {source}), "
            f"got {_shape(x)}{hint}"
        )

    def filter(self, weight, bias, dim: int) -> int:
        """Checks weight (dim, width) and bias (dim,); returns the width."""
        self.floating("weight", weight)
        if not (weight.dim() == 2 and weight.shape[0] == dim):
            hint = ""
            if weight.dim() == 2 and weight.shape[1] == dim:
                hint = ": it looks transposed, (width, dim)"
            raise ValueError(
                f"{self.op}: weight must have shape (dim={dim}, width), dim being x's, got "
                f"{_shape(weight)}{hint}"
            )
        width = weight.shape[1]
        if not 2 <= width <= MAX_WIDTH:
            raise ValueError(f"{self.op}: weight width must be in [2, {MAX_WIDTH}], got {width}")
        if bias is not None:
            self.floating("bias", bias)
            self.shape("bias", bias.dim() == 1 and bias.shape[0] == dim, f"({dim},)", bias)
        return width

    def states(self, name: str, states, dim: int, width: int) -> None:
        self.floating(name, states)
        self.shape(
            name,
            states.dim() == 3 and states.shape[1] == dim and states.shape[2] >= width - 1,
            f"(num_cache_lines, dim={dim}, state_len >= {width - 1})",
            states,
        )

    def pad_slot_id(self, pad_slot_id) -> None:
        self.integer("pad_slot_id", pad_slot_id)

    def cache_lines_in_range(
        self, name: str, indices, batch: int, num_lines: int, pad_slot_id: int, null_block_id: int
    ):
        indices = indices[:batch]
        pad = (indices == pad_slot_id) | (indices == null_block_id)
        bad = ~pad & ((indices < 0) | (indices >= num_lines))
        if bool(bad.any()):
            raise ValueError(
                f"{self.op}: {name} must hold values in [0, {num_lines}) or pad_slot_id="
                f"{pad_slot_id}, got {indices[bad][:8].tolist()}"
            )


def causal_conv1d_fn(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conv_states: torch.Tensor | None,
    query_start_loc: torch.Tensor,
    cache_indices: torch.Tensor | None = None,
    has_initial_state: torch.Tensor | None = None,
    activation: Activation = "silu",
    pad_slot_id: int = PAD_SLOT_ID,
    validate: bool = False,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal depthwise conv1d over packed variable-length sequences (prefill).

    Args:
        x: ``(dim, num_tokens)``, the tokens of all sequences concatenated along dim 1.
            Channel-last (``x.stride(0) == 1``, a transposed ``(num_tokens, dim)`` view) is the
            fast layout; any strides work.
        weight: ``(dim, width)``, width 2 to 8. bias: ``(dim,)`` or None.
        conv_states: ``(num_cache_lines, dim, state_len)`` with ``state_len >= width - 1``, or
            None (no cache is read or written). Updated in place: each sequence's line ends
            holding the last ``state_len`` columns of ``cat(initial state or zeros, tokens)``.
        query_start_loc: ``(batch + 1,)`` int32/int64: 0, cumulative sequence ends.
        cache_indices: ``(>= batch,)`` int32/int64 cache line per sequence, or None (line i);
            entries past the batch (an engine's longer buffer) are never read.
        has_initial_state: ``(>= batch,)`` bool, or None (all False). Needs ``conv_states``.
        activation: None/False (identity) or "silu"/"swish"/True.
        pad_slot_id: a sequence whose cache index equals it is padding: zero output, its
            state untouched.
        validate: also check index values (syncs with the device).
        out: optional buffer with x's shape and dtype (any strides) to write into instead of
            a new tensor, e.g. one a serving engine reuses; it must not overlap x.

    Returns:
        ``out``, or a new tensor with x's shape and dtype (channel-last when x is).
    """
    return _prefill(
        "causal_conv1d_fn",
        x,
        weight,
        bias,
        conv_states,
        query_start_loc,
        cache_indices=cache_indices,
        has_initial_state=has_initial_state,
        activation=activation,
        pad_slot_id=pad_slot_id,
        validate=validate,
        out=out,
    )


def _prefill(
    op: str,
    x,
    weight,
    bias,
    conv_states,
    query_start_loc,
    *,
    cache_indices=None,
    has_initial_state=None,
    activation: Activation = "silu",
    pad_slot_id: int = PAD_SLOT_ID,
    null_block_id: int | None = None,
    front_window: bool = False,
    validate: bool = False,
    check_first: bool = False,
    out=None,
) -> torch.Tensor:
    """Checks of every prefill dialect, then one fwd op call.

    ``validate`` asks for the value checks (they sync); ``check_first`` for the sync-free
    Python checks before the op (vLLM's ``validate_data``); ``null_block_id`` None means
    ``pad_slot_id`` (no second pad id)."""
    if null_block_id is None:
        null_block_id = pad_slot_id
    if torch.is_grad_enabled() and _requires_grad(x, weight, bias, conv_states):
        _refuse_grad(op, x=x, weight=weight, bias=bias, conv_states=conv_states)

    def run(silu: bool) -> torch.Tensor:
        args = (x, weight, bias, conv_states, query_start_loc, cache_indices, has_initial_state)
        if out is None:
            return _op("causal_conv1d_fwd")(*args, silu, pad_slot_id, null_block_id, front_window)
        _op("causal_conv1d_fwd_out")(*args, silu, pad_slot_id, out, null_block_id, front_window)
        return out

    if _fast_path(pad_slot_id, null_block_id, check_first or validate) and out is not x:
        # As in _decode: the op's C++ checks first, the Python ones to name what it refused.
        try:
            return run(_silu(op, activation))
        except RuntimeError:
            pass
    check = _Checker(op, x)
    silu = _silu(op, activation)
    check.floating("x", x)
    check.shape("x", x.dim() == 2, "(dim, num_tokens)", x)
    dim = check.channels(x, 0, "(dim, num_tokens)", weight, "conv_states", conv_states)
    num_tokens = x.shape[1]
    width = check.filter(weight, bias, dim)
    if conv_states is not None:
        check.states("conv_states", conv_states, dim, width)
    batch = check.query_start_loc(query_start_loc)
    if cache_indices is not None:
        check.index("cache_indices", cache_indices, batch)
    if has_initial_state is not None:
        if conv_states is None:
            raise ValueError(
                f"{op}: has_initial_state needs conv_states to read the initial state from"
            )
        check.index("has_initial_state", has_initial_state, batch, dtypes=(torch.bool,))
    check.pad_slot_id(pad_slot_id)
    check.integer("null_block_id", null_block_id)

    if _validation_requested(validate, x):
        if batch >= 0:
            check.starts_in_range(query_start_loc, batch, num_tokens, exact_end=True)
        if cache_indices is not None and conv_states is not None:
            check.cache_lines_in_range(
                "cache_indices",
                cache_indices,
                batch,
                conv_states.shape[0],
                pad_slot_id,
                null_block_id,
            )
        if cache_indices is None and conv_states is not None and conv_states.shape[0] < batch:
            raise ValueError(
                f"{op}: without cache_indices, conv_states needs a line per sequence "
                f"(>= {batch}), got {conv_states.shape[0]}"
            )

    if out is not None:
        check.tensor("out", out)
        if out.shape != x.shape or out.dtype != x.dtype:
            raise ValueError(
                f"{op}: out must have x's shape {_shape(x)} and dtype {x.dtype}, "
                f"got {_shape(out)} and {out.dtype}"
            )
        if out is x:
            raise ValueError(f"{op}: out must not be x: the prefill cannot run in place")
    return run(silu)


def causal_conv1d_update(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: Activation = None,
    cache_seqlens: torch.Tensor | None = None,
    conv_state_indices: torch.Tensor | None = None,
    pad_slot_id: int = PAD_SLOT_ID,
    out: torch.Tensor | None = None,
    validate: bool = False,
) -> torch.Tensor:
    """Causal depthwise conv1d for one or a few new tokens per sequence (decode).

    Args:
        x: ``(batch, dim)`` or ``(batch, dim, seqlen)``, any strides.
        conv_state: ``(num_cache_lines, dim, state_len)``, ``state_len >= width - 1``, any
            strides and dtype; updated in place.
        weight: ``(dim, width)``, width 2 to 8. bias: ``(dim,)`` or None.
        activation: None/False (identity) or "silu"/"swish"/True.
        cache_seqlens: ``(>= batch,)`` int32/int64 or None. Given, each line is a ring buffer
            whose next write position is ``cache_seqlens[b] % state_len`` (the caller
            advances it). None: the state is shifted left by seqlen and x appended.
        conv_state_indices: ``(>= batch,)`` int32/int64 cache line per row, or None (line b);
            entries past the batch (an engine's longer buffer) are never read.
        pad_slot_id: rows whose index equals it get zero output and keep their state.
        out: optional output with x's shape and dtype; may be x itself (in place).
        validate: also check index values (syncs with the device).

    Returns:
        ``out`` (a new tensor when not given), x's shape and dtype.
    """
    if out is None:
        out = torch.empty_like(x) if isinstance(x, torch.Tensor) else None
    return _decode(
        "causal_conv1d_update",
        x,
        conv_state,
        weight,
        bias,
        out=out,
        activation=activation,
        cache_seqlens=cache_seqlens,
        conv_state_indices=conv_state_indices,
        pad_slot_id=pad_slot_id,
        validate=validate,
    )


def _decode(
    op: str,
    x,
    conv_state,
    weight,
    bias,
    *,
    out,
    activation: Activation = None,
    cache_seqlens=None,
    conv_state_indices=None,
    pad_slot_id: int = PAD_SLOT_ID,
    validate: bool = False,
    check_first: bool = False,
    num_accepted_tokens=None,
    query_start_loc=None,
    max_query_len: int = -1,
    null_block_id: int | None = None,
    front_window: bool = False,
) -> torch.Tensor:
    """Checks of every decode dialect, then one update op call writing into ``out``.

    ``validate``, ``check_first`` and ``null_block_id`` as in :func:`_prefill`."""
    if null_block_id is None:
        null_block_id = pad_slot_id
    if torch.is_grad_enabled() and _requires_grad(x, weight, bias, conv_state):
        _refuse_grad(op, x=x, weight=weight, bias=bias, conv_state=conv_state)

    def run(silu: bool) -> torch.Tensor:
        _op("causal_conv1d_update")(
            x,
            conv_state,
            weight,
            bias,
            silu,
            cache_seqlens,
            conv_state_indices,
            pad_slot_id,
            out,
            num_accepted_tokens,
            query_start_loc,
            max_query_len,
            null_block_id,
            front_window,
        )
        return out

    if (
        query_start_loc is None
        and num_accepted_tokens is None
        and _fast_path(pad_slot_id, null_block_id, check_first or validate)
    ):
        # A plain decode call: the op's C++ checks first, the Python ones below to name what
        # it refused (_fast_path).
        try:
            return run(_silu(op, activation))
        except RuntimeError:
            pass
    check = _Checker(op, x)
    silu = _silu(op, activation)
    check.floating("x", x)
    varlen = query_start_loc is not None
    if varlen:
        layout = "(num_tokens, dim) with query_start_loc"
        check.shape("x", x.dim() == 2, layout, x)
        num_tokens = x.shape[0]
        dim = check.channels(x, 1, layout, weight, "conv_state", conv_state)
        batch = check.query_start_loc(query_start_loc)
        check.integer("max_query_len", max_query_len)
        lmax = max_query_len
    else:
        layout = "(batch, dim) or (batch, dim, seqlen)"
        check.shape("x", x.dim() in (2, 3), layout, x)
        batch = x.shape[0]
        dim = check.channels(x, 1, layout, weight, "conv_state", conv_state)
        lmax = x.shape[2] if x.dim() == 3 else 1
    width = check.filter(weight, bias, dim)
    check.states("conv_state", conv_state, dim, width)
    if cache_seqlens is not None:
        check.index("cache_seqlens", cache_seqlens, batch)
    if conv_state_indices is not None:
        check.index("conv_state_indices", conv_state_indices, batch)
    elif conv_state.shape[0] < batch:
        raise ValueError(
            f"{op}: without conv_state_indices, conv_state needs a line per row "
            f"(>= {batch}), got {conv_state.shape[0]}"
        )
    if num_accepted_tokens is not None:
        check.index("num_accepted_tokens", num_accepted_tokens, batch)
        if lmax < 1:
            raise ValueError(
                f"{op}: num_accepted_tokens with query_start_loc needs max_query_len >= 1, "
                f"got {max_query_len}"
            )
        if conv_state.shape[2] < width - 2 + lmax:
            raise ValueError(
                f"{op}: with num_accepted_tokens, conv_state needs width - 1 + max_query_len - 1"
                f" = {width - 2 + lmax} columns (state_len), got {_shape(conv_state)}"
            )
    check.pad_slot_id(pad_slot_id)
    check.integer("null_block_id", null_block_id)
    check.tensor("out", out)
    if out.shape != x.shape or out.dtype != x.dtype:
        raise ValueError(
            f"{op}: out must have x's shape {_shape(x)} and dtype {x.dtype}, "
            f"got {_shape(out)} and {out.dtype}"
        )

    if _validation_requested(validate, x):
        if conv_state_indices is not None:
            check.cache_lines_in_range(
                "conv_state_indices",
                conv_state_indices,
                batch,
                conv_state.shape[0],
                pad_slot_id,
                null_block_id,
            )
        if varlen and batch >= 0:
            check.starts_in_range(query_start_loc, batch, num_tokens, exact_end=False)
            lengths = query_start_loc[1 : batch + 1] - query_start_loc[:batch]
            if num_accepted_tokens is not None and bool((lengths > lmax).any()):
                raise ValueError(
                    f"{op}: query_start_loc gives rows longer than max_query_len={lmax}: "
                    f"{lengths[lengths > lmax][:8].tolist()}"
                )
        if num_accepted_tokens is not None:
            accepted = num_accepted_tokens[:batch]
            bad = (accepted < 1) | (accepted > lmax)
            if bool(bad.any()):
                raise ValueError(
                    f"{op}: num_accepted_tokens must hold values in [1, {lmax}], "
                    f"got {accepted[bad][:8].tolist()}"
                )

    return run(silu)


def _fwd_output_like(x: torch.Tensor) -> torch.Tensor:
    """The fwd op's output layout: channel-last when x is (mirrors empty_fwd_output in C++)."""
    if x.stride(0) == 1 and x.stride(1) != 1:
        return x.new_empty((x.shape[1], x.shape[0])).t()
    return x.new_empty(x.shape)


def _check_fake_devices(op: str, x, *tensors) -> None:
    """A call mixing meta tensors with real ones lands on the fake kernels: refuse it as the
    C++ checks refuse mixed devices."""
    for t in tensors:
        torch._check(
            t is None or t.device == x.device,
            lambda: f"{op}: every tensor must be on x's device",
        )


@torch.library.register_fake("causal_conv1d::causal_conv1d_fwd")
def _causal_conv1d_fwd_fake(
    x,
    weight,
    bias,
    conv_states,
    query_start_loc,
    cache_indices,
    has_initial_state,
    silu,
    pad_slot_id,
    null_block_id=-1,
    front_window=False,
):
    _check_fake_devices(
        "causal_conv1d_fwd",
        x,
        weight,
        bias,
        conv_states,
        query_start_loc,
        cache_indices,
        has_initial_state,
    )
    torch._check(x.dim() == 2, lambda: "causal_conv1d_fwd: x must be (dim, num_tokens)")
    torch._check(
        weight.dim() == 2 and weight.shape[0] == x.shape[0],
        lambda: "causal_conv1d_fwd: weight must be (dim, width)",
    )
    torch._check(
        2 <= weight.shape[1] <= MAX_WIDTH, lambda: "causal_conv1d_fwd: width must be in [2, 8]"
    )
    torch._check(query_start_loc.dim() == 1, lambda: "causal_conv1d_fwd: bad query_start_loc")
    if conv_states is not None:
        torch._check(
            conv_states.dim() == 3 and conv_states.shape[1] == x.shape[0],
            lambda: "causal_conv1d_fwd: conv_states must be (num_cache_lines, dim, state_len)",
        )
    return _fwd_output_like(x)


@torch.library.register_fake("causal_conv1d::causal_conv1d_fwd_out")
def _causal_conv1d_fwd_out_fake(
    x,
    weight,
    bias,
    conv_states,
    query_start_loc,
    cache_indices,
    has_initial_state,
    silu,
    pad_slot_id,
    out,
    null_block_id=-1,
    front_window=False,
):
    _causal_conv1d_fwd_fake(
        x,
        weight,
        bias,
        conv_states,
        query_start_loc,
        cache_indices,
        has_initial_state,
        silu,
        pad_slot_id,
    )
    _check_fake_devices("causal_conv1d_fwd", x, out)
    torch._check(out.shape == x.shape, lambda: "causal_conv1d_fwd: out must match x")


@torch.library.register_fake("causal_conv1d::causal_conv1d_update")
def _causal_conv1d_update_fake(
    x,
    conv_state,
    weight,
    bias,
    silu,
    cache_seqlens,
    conv_state_indices,
    pad_slot_id,
    out,
    num_accepted_tokens=None,
    query_start_loc=None,
    max_query_len=-1,
    null_block_id=-1,
    front_window=False,
):
    varlen = query_start_loc is not None
    _check_fake_devices(
        "causal_conv1d_update",
        x,
        conv_state,
        weight,
        bias,
        cache_seqlens,
        conv_state_indices,
        out,
        num_accepted_tokens,
        query_start_loc,
    )
    torch._check(
        x.dim() == 2 if varlen else x.dim() in (2, 3),
        lambda: "causal_conv1d_update: x must be (batch, dim[, seqlen]) or (num_tokens, dim)",
    )
    torch._check(out.shape == x.shape, lambda: "causal_conv1d_update: out must match x")
    torch._check(
        weight.dim() == 2 and weight.shape[0] == x.shape[1],
        lambda: "causal_conv1d_update: weight must be (dim, width)",
    )
    torch._check(
        conv_state.dim() == 3 and conv_state.shape[1] == x.shape[1],
        lambda: "causal_conv1d_update: conv_state must be (num_cache_lines, dim, state_len)",
    )


# ---- The Dao dialect's training ops (CONTRACT 1.5): fake kernels and autograd ----


def _batch_states_like(x: torch.Tensor, width: int, wanted: bool) -> torch.Tensor:
    """(batch, dim, width-1) channel-last as Dao allocates final states, or empty (0,)
    (mirrors empty_batch_states in C++)."""
    if not wanted:
        return x.new_empty((0,))
    return x.new_empty((x.shape[0], width - 1, x.shape[1])).transpose(1, 2)


def _check_batch_fake(op: str, x, weight) -> None:
    torch._check(x.dim() == 3, lambda: f"{op}: x must be (batch, dim, seqlen)")
    torch._check(
        weight.dim() == 2 and weight.shape[0] == x.shape[1],
        lambda: f"{op}: weight must be (dim, width)",
    )
    torch._check(2 <= weight.shape[1] <= MAX_WIDTH, lambda: f"{op}: width must be in [2, 8]")


@torch.library.register_fake("causal_conv1d::causal_conv1d_batch_fwd")
def _causal_conv1d_batch_fwd_fake(
    x, weight, bias, seq_idx, initial_states, return_final_states, silu
):
    _check_batch_fake("causal_conv1d_batch_fwd", x, weight)
    return torch.empty_like(x), _batch_states_like(x, weight.shape[1], return_final_states)


@torch.library.register_fake("causal_conv1d::causal_conv1d_batch_bwd")
def _causal_conv1d_batch_bwd_fake(
    x,
    weight,
    bias,
    seq_idx,
    initial_states,
    dout,
    dfinal_states,
    silu,
    return_dinitial_states,
    deterministic,
):
    _check_batch_fake("causal_conv1d_batch_bwd", x, weight)
    torch._check(dout.shape == x.shape, lambda: "causal_conv1d_batch_bwd: dout must match x")
    dbias = bias.new_empty(bias.shape) if bias is not None else weight.new_empty((0,))
    want = return_dinitial_states and initial_states is not None
    dinit = torch.empty_like(initial_states) if want else x.new_empty((0,))
    return torch.empty_like(x), weight.new_empty(weight.shape), dbias, dinit


def deterministic_requested() -> bool:
    """Whether backward passes must give the same bits on every run: under
    ``torch.use_deterministic_algorithms(True)`` or with ``CAUSAL_CONV1D_DETERMINISTIC=1``
    (Dao's switch). The CPU kernels always are."""
    env = os.environ.get("CAUSAL_CONV1D_DETERMINISTIC", "0") not in ("", "0")
    return env or torch.are_deterministic_algorithms_enabled()


def _batch_fwd_setup_context(ctx, inputs, output):
    x, weight, bias, seq_idx, initial_states, return_final_states, silu = inputs
    ctx.save_for_backward(x, weight, bias, seq_idx, initial_states)
    ctx.return_final_states = return_final_states
    ctx.silu = silu
    ctx.want_dinitial = initial_states is not None and ctx.needs_input_grad[4]


def _batch_fwd_backward(ctx, dout, dfinal_states):
    x, weight, bias, seq_idx, initial_states = ctx.saved_tensors
    if not ctx.return_final_states:
        dfinal_states = None
    dx, dweight, dbias, dinit = torch.ops.causal_conv1d.causal_conv1d_batch_bwd(
        x,
        weight,
        bias,
        seq_idx,
        initial_states,
        dout,
        dfinal_states,
        ctx.silu,
        ctx.want_dinitial,
        deterministic_requested(),
    )
    return (
        dx,
        dweight,
        dbias if bias is not None else None,
        None,
        dinit if ctx.want_dinitial else None,
        None,
        None,
    )


torch.library.register_autograd(
    "causal_conv1d::causal_conv1d_batch_fwd",
    _batch_fwd_backward,
    setup_context=_batch_fwd_setup_context,
)
