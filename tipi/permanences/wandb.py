"""``WandBManager``: the single-tracker WandB logger of earlier tipi versions, kept for configs that name it.

``logger=wandb`` now selects :class:`~tipi.permanences.metrics_logger.MetricsLogger`
with a :class:`~tipi.trackers.wandb.WandBTracker` under ``logger.trackers.wandb``;
a config whose ``logger._target_`` is ``tipi.permanences.wandb.WandBManager``
(with WandB's settings directly under ``logger``) gets the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tipi.permanences.metrics_logger import MetricsLogger
from tipi.trackers.wandb import (
    MODE_KEY,
    MODES,
    WandBTracker,
    has_credentials,
    requested_mode,
    resolve_mode,
    sweep_parameter_names,
    wandb_settings,
)

__all__ = [
    "MODES",
    "MODE_KEY",
    "WandBManager",
    "has_credentials",
    "requested_mode",
    "resolve_mode",
    "sweep_parameter_names",
    "wandb_settings",
]


class WandBManager(MetricsLogger):
    """``metrics.jsonl`` plus one WandB run; the arguments are :class:`~tipi.trackers.wandb.WandBTracker`'s."""

    def __init__(
        self,
        project: str | None = "tipi",
        entity: str | None = None,
        mode: str | None = None,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        group: str | None = None,
        job_type: str | None = None,
        notes: str | None = None,
        init_timeout: float = 30.0,
        log_images: bool = True,
        settings: Mapping[str, Any] | None = None,
        filename: str = "metrics.jsonl",
    ) -> None:
        tracker = WandBTracker(
            project=project,
            entity=entity,
            mode=mode,
            name=name,
            tags=tags,
            group=group,
            job_type=job_type,
            notes=notes,
            init_timeout=init_timeout,
            log_images=log_images,
            settings=settings,
        )
        super().__init__(filename=filename, trackers={"wandb": tracker})
