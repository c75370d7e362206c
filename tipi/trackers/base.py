"""The tracker interface, and what a tracker is told about the run it records."""

from __future__ import annotations

import functools
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf

from tipi.core.errors import TipiError
from tipi.core.record import RunStatus


class TrackerFailed(TipiError):
    """A tracker could not start; ``key`` names its ``logger.trackers.<name>`` node."""


def plain_config(cfg: Any) -> dict[str, Any]:
    """The run's config as plain containers, resolved where it can be (``hydra`` left out)."""
    if cfg is None:
        return {}
    if isinstance(cfg, DictConfig):
        try:
            container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
        except Exception:  # noqa: BLE001 - an unresolvable leaf must not stop logging
            container = OmegaConf.to_container(cfg, resolve=False)
    else:
        container = dict(cfg)
    assert isinstance(container, dict)
    container.pop("hydra", None)
    return {str(k): v for k, v in container.items()}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optimizer": {"lr": 0.1}}`` -> ``{"optimizer.lr": 0.1}``; lists become JSON text, None ``"null"``.

    The leaves are what TensorBoard's HParams and MLflow's params accept: bool,
    int, float or str.
    """
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif value is None:
            flat[name] = "null"
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value, default=str)
    return flat


def original_cwd() -> Path:
    """Where the user launched tipi: Hydra's ``runtime.cwd`` when Hydra runs the job, else the cwd.

    A relative tracking URI or directory means "relative to here", as it
    does for Hydra's own ``outputs/`` and ``multirun/``.
    """
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.cwd)
    except Exception:  # noqa: BLE001 - outside Hydra (a plain script) the cwd is the answer
        pass
    return Path(os.environ.get("TIPI_ORIGINAL_CWD") or os.getcwd())


@dataclass
class TrackerContext:
    """What a tracker knows about the run when it starts.

    Attributes:
        run_dir: the run directory.
        cfg: the composed run config (a ``DictConfig``), or None outside Hydra.
        previous: this tracker's ``run.json`` entry from an earlier attempt of
            the same run directory (resume, requeue), else ``{}``.
        resumed: whether this run directory ran before.
        name, tags, group: ``run.name``, ``run.tags``, ``run.group``.
        sweep_dir, job: the multirun directory and the job's number, for a job of a Hydra multirun.
        record_data: the whole ``run.json`` as it was before this attempt (read only).
    """

    run_dir: Path
    cfg: Any = None
    previous: dict[str, Any] = field(default_factory=dict)
    resumed: bool = False
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    sweep_dir: str | None = None
    job: int | None = None
    record_data: dict[str, Any] = field(default_factory=dict)

    @functools.cached_property
    def config(self) -> dict[str, Any]:
        """The resolved config as plain containers (``hydra`` left out)."""
        return plain_config(self.cfg)

    @functools.cached_property
    def flat_config(self) -> dict[str, Any]:
        """The resolved config as ``{"optimizer.lr": 0.001, ...}``."""
        return flatten(self.config)

    def config_yaml(self) -> str:
        """The composed config as YAML text (resolved where it can be)."""
        return OmegaConf.to_yaml(OmegaConf.create(self.config)) if self.config else ""


@dataclass
class RunOutcome:
    """How a run ended, as trackers are told at ``finish()``."""

    status: RunStatus = RunStatus.SUCCEEDED
    exit_code: int = 0
    requeue: bool = False
    objective_key: str | None = None
    objective: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)


class StepFilter:
    """The last step an earlier attempt of the run wrote, per name.

    A resumed run repeats the steps between its last checkpoint and the
    interruption; a backend that cannot overwrite a point (TensorBoard,
    MLflow) skips them instead (the values are the same: resuming is exact).
    Within one attempt nothing is skipped, so every row of ``metrics.jsonl``
    reaches the backend.
    """

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def seen(self, name: str, step: int) -> None:
        """Note that an earlier attempt wrote ``name`` at ``step``."""
        if step > self.last.get(name, -1):
            self.last[name] = step

    def after_resume(self, name: str, step: int) -> bool:
        """True when no earlier attempt wrote ``name`` at ``step`` or later."""
        return step > self.last.get(name, -1)


class Tracker(ABC):
    """One backend that receives every metric and figure of a run.

    The logger calls :meth:`start` (on the main thread, before anything runs),
    then :meth:`log_metrics`, :meth:`log_image` and :meth:`flush` from its
    worker thread, in order, then :meth:`finish` once. A method that raises
    drops the tracker: :meth:`abort` is called instead of anything else.
    """

    kind: ClassVar[str] = "tracker"
    # set by the logger to the name under logger.trackers
    name: str = ""

    @property
    def key(self) -> str:
        """The tracker's config node, for error messages."""
        return f"logger.trackers.{self.name or self.kind}"

    @abstractmethod
    def start(self, context: TrackerContext) -> dict[str, Any]:
        """Open the backend; return what ``run.json`` should keep under ``trackers.<name>`` (a run id)."""

    @abstractmethod
    def log_metrics(self, values: Mapping[str, Any], step: int, wall_time: float | None = None) -> None:
        """Record plain numbers ``values`` at ``step``; ``wall_time``: when they were logged (``time.time()``)."""

    def record_fields(self, info: Mapping[str, Any]) -> dict[str, Any]:
        """Top-level ``run.json`` fields to set from :meth:`start`'s ``info``. Default: none."""
        return {}

    def log_image(self, key: str, path: Path, step: int, caption: str | None = None) -> None:
        """Record the PNG at ``path`` as image ``key``. Default: nothing."""

    def flush(self) -> None:
        """Send what is buffered (called whenever the logger's queue runs empty). Default: nothing."""

    def finish(self, outcome: RunOutcome) -> dict[str, Any]:
        """Close the run with ``outcome``; return extra fields for ``run.json``. Default: nothing."""
        return {}

    def abort(self) -> None:
        """Release what the tracker holds after it failed; must not raise. Default: nothing."""
