"""Deprecated module path: the metrics logger is :mod:`tipi.permanences.metrics_logger` (old configs keep working)."""

from __future__ import annotations

from typing import Any

from tipi.core.deprecation import renamed
from tipi.permanences import metrics_logger as _metrics_logger


def __getattr__(name: str) -> Any:
    return renamed(__name__, name, {"MetricsLogger": _metrics_logger.MetricsLogger})
