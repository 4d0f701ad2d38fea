"""Loads the compiled extension, or says exactly why it cannot and how to rebuild it.

setup.py records in ``_build_info.py`` the torch it built against and the C++ API it built on
(``csrc/torch_api.h``). A build on torch's stable ABI (torch >= 2.11) loads into that torch and
every later one; a classic build only into the torch it was compiled against, so that
``pip install .`` with build isolation (which compiles against whatever torch pip downloads for
the build) can install a package that then fails beside the user's torch. Importing the package
holds the record against the running torch before loading ``_C``.
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


def _record(name: str) -> str | None:
    try:
        from . import _build_info
    except ImportError:
        return None
    return getattr(_build_info, name, None)


def built_against() -> str | None:
    """The torch version the extension was compiled against, or None if unrecorded."""
    return _record("TORCH_VERSION")


def built_abi() -> str:
    """The C++ API the extension was built on: "stable" or "classic" (unrecorded: classic)."""
    return _record("ABI") or "classic"


def _release(version: str) -> tuple[int, ...]:
    """(major, minor, patch) of a torch version string such as 2.13.0+cpu."""
    numbers = []
    for part in version.split("+")[0].split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        numbers.append(int(digits or 0))
    return tuple(numbers)


def oldest_served() -> str | None:
    """A stable-ABI build: the oldest torch it loads into (its TORCH_TARGET_VERSION)."""
    return _record("OLDEST_TORCH")


def loads_into_running_torch(built: str | None, abi: str, oldest: str | None = None) -> bool:
    """Whether a build against torch ``built`` on ``abi`` loads into the running torch: a
    stable-ABI build into every torch from ``oldest`` (else ``built``) on, a classic one only
    into ``built``."""
    if built is None:
        return True
    if abi == "stable":
        return _release(torch.__version__) >= _release(oldest or built)
    return built == torch.__version__


def _advice(built: str | None, abi: str, oldest: str | None = None) -> str:
    serves = (
        f"torch {oldest or built} and later (torch's stable ABI)"
        if abi == "stable"
        else f"only torch {built} (the classic C++ API)"
    )
    return (
        f"built against torch {built or '(unrecorded)'}, which serves {serves}; running torch "
        f"{torch.__version__} from {os.path.dirname(torch.__file__)}. Rebuild it against this "
        f"torch from the source checkout: `{REBUILD}` ({WHY})."
    )


def load_extension() -> None:
    """Imports ``_C`` (its static initialisers register the ops) or raises ImportError."""
    built, abi, oldest = built_against(), built_abi(), oldest_served()
    mismatch = not loads_into_running_torch(built, abi, oldest)
    # The one setting read before the library (and its settings table) is loaded, by the
    # table's rule: unset, empty or "0" is off.
    if mismatch and os.environ.get("CAUSAL_CONV1D_SKIP_TORCH_CHECK", "0") in ("", "0"):
        raise ImportError(
            "causal_conv1d_kernels cannot load: its compiled extension was "
            + _advice(built, abi, oldest)
            + " (CAUSAL_CONV1D_SKIP_TORCH_CHECK=1 skips this check at your own risk.)"
        )
    try:
        importlib.import_module("._C", __package__)
    except (ImportError, OSError) as e:
        raise ImportError(
            f"causal_conv1d_kernels cannot load its compiled extension _C ({e}); it was "
            + _advice(built, abi, oldest)
        ) from e
