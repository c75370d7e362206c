"""Deprecated: tipi's Hydra callbacks live in :mod:`tipi._hydra.callbacks` (old configs keep working)."""

from __future__ import annotations

from typing import Any

from tipi._hydra import callbacks as _callbacks
from tipi.core.deprecation import renamed


def __getattr__(name: str) -> Any:
    return renamed(
        __name__,
        name,
        {"SweepSummary": _callbacks.MultirunSummary, "OutputDirCheck": _callbacks.OutputDirCheck},
    )
