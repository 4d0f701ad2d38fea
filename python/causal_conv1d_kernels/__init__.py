"""Causal depthwise conv1d for Mamba-family inference.

Two ops, registered as ``torch.ops.causal_conv1d.*`` when this package is imported:
prefill over packed variable-length sequences (:func:`causal_conv1d_fn`) and decode over a
conv-state cache (:func:`causal_conv1d_update`). See ``SPEC.md`` / the README for the contract.
"""

import torch  # noqa: F401  (loads libtorch, which _C links against)

from . import _C  # noqa: F401  (loads the library; its static initialisers register the ops)
from .ops import PAD_SLOT_ID, causal_conv1d_fn, causal_conv1d_update, cpu_isa, has_cuda_backend

__all__ = [
    "PAD_SLOT_ID",
    "causal_conv1d_fn",
    "causal_conv1d_update",
    "cpu_isa",
    "has_cuda_backend",
]
__version__ = "0.1.0"
