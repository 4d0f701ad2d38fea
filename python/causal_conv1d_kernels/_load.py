"""Loads the compiled extension, or says exactly why it cannot and how to rebuild it.

A C++ extension only loads into the torch it was compiled against. ``pip install .`` without
``--no-build-isolation`` compiles in a throwaway environment with whatever torch pip downloads
there, so the package can install cleanly and then fail at import (or crash later) beside the
torch the user actually has. setup.py records the torch it built against in ``_build_info.py``;
importing the package compares that record with the running torch before loading ``_C``.
"""

from __future__ import annotations

import importlib
import os

import torch

REBUILD = (
    "pip install setuptools ninja && pip install --no-build-isolation --force-reinstall --no-deps ."
)
WHY = (
    "--no-build-isolation makes pip compile against the torch installed in this environment "
    "instead of a fresh one it downloads for the build"
)


def built_against() -> str | None:
    """The torch version the extension was compiled against, or None if unrecorded."""
    try:
        from . import _build_info
    except ImportError:
        return None
    return getattr(_build_info, "TORCH_VERSION", None)


def _advice(built: str | None) -> str:
    return (
        f"built against torch {built or '(unrecorded)'}, running torch {torch.__version__} "
        f"from {os.path.dirname(torch.__file__)}. Rebuild it against this torch from the "
        f"source checkout: `{REBUILD}` ({WHY})."
    )


def load_extension() -> None:
    """Imports ``_C`` (its static initialisers register the ops) or raises ImportError."""
    built = built_against()
    mismatch = built is not None and built != torch.__version__
    # The one setting read before the library (and its settings table) is loaded, by the
    # table's rule: unset, empty or "0" is off.
    if mismatch and os.environ.get("CAUSAL_CONV1D_SKIP_TORCH_CHECK", "0") in ("", "0"):
        raise ImportError(
            "causal_conv1d_kernels cannot load: its compiled extension was "
            + _advice(built)
            + " (CAUSAL_CONV1D_SKIP_TORCH_CHECK=1 skips this check at your own risk.)"
        )
    try:
        importlib.import_module("._C", __package__)
    except (ImportError, OSError) as e:
        raise ImportError(
            f"causal_conv1d_kernels cannot load its compiled extension _C ({e}); it was "
            + _advice(built)
        ) from e
