"""The internal core every dialect calls: argument checks (CONTRACT 2) and one op call each,
by keyword (:func:`_prefill`, :func:`_decode`).

Checks that need no device sync always run and raise ``TypeError``/``ValueError`` naming the
argument. Checks that read index values (they sync with the device) run when ``validate=True``
is passed or ``CAUSAL_CONV1D_VALIDATE=1`` is set (read once, at import), and never while a CUDA
graph is being captured or ``torch.compile`` traces the call. Without them the kernels still
stay inside the tensors they were given: a cache index outside ``[0, num_cache_lines)`` is
treated as padding.

The inference ops have no backward pass: a call that autograd would record (grad mode on and
an input that requires grad) is refused, naming the differentiable ``causal_conv1d_kernels.dao``.
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


def _prefill(
    op: str,
    *,
    x,
    weight,
    bias,
    conv_states,
    query_start_loc,
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


def _decode(
    op: str,
    *,
    x,
    conv_state,
    weight,
    bias,
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
    else:
        layout = "(batch, dim) or (batch, dim, seqlen)"
        check.shape("x", x.dim() in (2, 3), layout, x)
    dim = check.channels(x, 1, layout, weight, "conv_state", conv_state)
    if varlen:
        num_tokens = x.shape[0]
        batch = check.query_start_loc(query_start_loc)
        check.integer("max_query_len", max_query_len)
        lmax = max_query_len
    else:
        batch = x.shape[0]
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


def deterministic_requested() -> bool:
    """Whether backward passes must give the same bits on every run: under
    ``torch.use_deterministic_algorithms(True)`` or with ``CAUSAL_CONV1D_DETERMINISTIC=1``
    (Dao's switch). The CPU kernels always are."""
    env = os.environ.get("CAUSAL_CONV1D_DETERMINISTIC", "0") not in ("", "0")
    return env or torch.are_deterministic_algorithms_enabled()
