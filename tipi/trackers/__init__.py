"""Tracker backends behind the one ``logger`` permanence: WandB, TensorBoard, MLflow, several at once.

``metrics.jsonl`` is always written by :class:`tipi.permanences.metrics_logger.MetricsLogger`;
each backend here receives the same metrics and figures through a
:class:`~tipi.trackers.hub.TrackerHub`, which calls them off the training
thread and drops one that fails (one log line, one ``trackers`` entry in
``run.json``) while the run and the other trackers go on.

``logger=[wandb,tensorboard]`` (a list of ``logger`` group options) selects
several: each option adds its ``logger.trackers.<name>`` node. The backends
import their libraries in :meth:`~tipi.trackers.base.Tracker.start`, never at
import time.
"""

from __future__ import annotations

from typing import Any

from tipi.core.deprecation import renamed
from tipi.trackers.base import RunOutcome, Tracker, TrackerContext, TrackerFailed

__all__ = ["RunOutcome", "Tracker", "TrackerContext", "TrackerFailed"]


def __getattr__(name: str) -> Any:
    return renamed(__name__, name, {"Outcome": RunOutcome})
