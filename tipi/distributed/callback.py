"""Deprecated: ``SharedRunDir`` is now :class:`tipi._hydra.callbacks.SharedRunDir` (old configs keep working)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """``tipi.distributed.callback.SharedRunDir`` in an old config: the class, with a DeprecationWarning."""
    if name == "SharedRunDir":
        import importlib
        import warnings

        warnings.warn(
            "tipi.distributed.callback.SharedRunDir is now tipi._hydra.callbacks.SharedRunDir",
            DeprecationWarning,
            stacklevel=2,
        )
        # by name: the seam sits above this package (an import statement would make a cycle)
        return importlib.import_module("tipi._hydra.callbacks").SharedRunDir
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
