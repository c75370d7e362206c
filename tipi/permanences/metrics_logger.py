"""The logger: every metric lands in ``<run dir>/metrics.jsonl``, and in each configured tracker.

One permanence, one interface for processes (``log``, ``log_image``); the
trackers (WandB, TensorBoard, MLflow; ``logger=[wandb,tensorboard]`` for
several) sit behind it on a worker thread (:mod:`tipi.trackers.hub`). A
tracker that fails is dropped with one log line and one ``trackers.<name>``
entry in ``run.json``; ``metrics.jsonl`` is written on the calling thread and
is always complete.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from omegaconf import DictConfig, OmegaConf

from tipi.core.errors import ConfigError, Interrupted, TipiError
from tipi.core.permanence import Permanence
from tipi.core.record import RunStatus
from tipi.core.trial import TrialPruned
from tipi.trackers.base import RunOutcome, Tracker, TrackerContext
from tipi.trackers.hub import TrackerHub

# The trackers tipi ships: a ``logger.trackers.<name>`` node without ``_target_`` gets this class.
KNOWN_TRACKERS = {
    "wandb": "tipi.trackers.wandb.WandBTracker",
    "tensorboard": "tipi.trackers.tensorboard.TensorBoardTracker",
    "mlflow": "tipi.trackers.mlflow.MLflowTracker",
}


def to_float(value: Any) -> Any:
    """A plain Python number for tensors and NumPy scalars; other values unchanged."""
    item = getattr(value, "item", None)
    if callable(item):
        value = item()
    return value


def build_trackers(nodes: Mapping[str, Any] | None) -> dict[str, Tracker]:
    """Tracker objects from ``logger.trackers``: ``_target_`` nodes, ready trackers, or None (left out)."""
    from tipi.core.builder import HYDRA_KEYS, check_params, locate

    if isinstance(nodes, DictConfig):
        nodes = OmegaConf.to_container(nodes, resolve=True)  # type: ignore[assignment]  # a DictConfig becomes the plain dict used below
    trackers: dict[str, Tracker] = {}
    for name, node in (nodes or {}).items():
        key = f"logger.trackers.{name}"
        if node is None or isinstance(node, Tracker):
            if node is not None:
                trackers[str(name)] = node
            continue
        if not isinstance(node, Mapping):
            raise ConfigError(f"must be a tracker node (a mapping), got {type(node).__name__}", key=key)
        params = {str(k): v for k, v in node.items()}
        target = params.pop("_target_", None) or KNOWN_TRACKERS.get(str(name))
        if target is None:
            raise ConfigError.unknown(key, str(name), KNOWN_TRACKERS, "tracker")
        cls = locate(str(target), f"{key}._target_")
        if not (isinstance(cls, type) and issubclass(cls, Tracker)):
            raise ConfigError(f"'{target}' is not a tipi.trackers.Tracker subclass", key=f"{key}._target_")
        params = {k: v for k, v in params.items() if k not in HYDRA_KEYS}
        check_params(cls, params, key)
        tracker = cls(**params)
        tracker.name = str(name)
        trackers[str(name)] = tracker
    return trackers


class MetricsLogger(Permanence):
    """Appends one JSON line per ``log()`` call and hands the values to every tracker.

    Args:
        filename: the JSON-lines file in the run directory.
        trackers: name -> tracker node (``_target_`` and its settings), as
            the ``logger`` config group's options put them under ``logger.trackers``.
        finish_timeout: seconds the end of a run waits for trackers to send
            what is queued; a tracker still busy then is reported failed.
        flush_every: seconds between the trackers' rounds of writing (metrics
            reach them at most this late); 0 hands over each call at once.
    """

    def __init__(
        self,
        filename: str = "metrics.jsonl",
        trackers: Mapping[str, Any] | None = None,
        finish_timeout: float = 60.0,
        flush_every: float = 1.0,
    ) -> None:
        self.filename = filename
        self.summary: dict[str, Any] = {}
        self.step = 0
        self._file: IO[str] | None = None
        self.path: Path | None = None
        self.hub = TrackerHub(build_trackers(trackers), finish_timeout=finish_timeout, flush_every=flush_every)
        self._reported: dict[str, str] = {}

    # -- lifecycle ----------------------------------------------------------
    def initialize(self) -> None:
        """Open ``metrics.jsonl`` for appending (a resumed run continues the same file), then start the trackers."""
        self.path = self.controller.run_dir / self.filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives for the run
        except OSError as exc:
            raise TipiError(
                f"cannot open {self.path} for writing: {exc.strerror}",
                key="permanences.logger",
                hint="Check the output directory (hydra.run.dir) is writable.",
            ) from exc
        if not self.hub.trackers:
            return
        try:
            infos = self.hub.start(self._context_for)
        except BaseException:
            self._close()  # the controller cleans up only permanences that initialized fully
            raise
        self._update_record(infos, started=True)

    def _context_for(self, tracker: Tracker) -> TrackerContext:
        context = self.controller.context
        record = context.record.data if context.record is not None else {}
        cfg = context.cfg
        sweep_dir, job = _multirun_job()
        return TrackerContext(
            run_dir=Path(context.run_dir),
            cfg=cfg,
            resumed=len(record.get("attempts") or []) > 1,
            previous=dict((record.get("trackers") or {}).get(tracker.name) or {}),
            name=_select(cfg, "run.name"),
            tags=list(_select(cfg, "run.tags") or []),
            group=_select(cfg, "run.group"),
            sweep_dir=sweep_dir,
            job=job,
            record_data=dict(record),
        )

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record ``metrics`` (numbers or 0-d tensors) at ``step`` (default: an internal counter)."""
        if step is None:
            step = self.step
            self.step += 1
        else:
            self.step = max(self.step, step + 1)
        values = {k: to_float(v) for k, v in metrics.items()}
        self.summary.update(values)
        now = time.time()
        self._write({"step": step, "time": round(now, 3), **values})
        if self.hub.active:
            numbers = {k: v for k, v in values.items() if isinstance(v, (int, float))}
            if numbers:
                self.hub.metrics(numbers, step, now)

    def log_image(self, key: str, path: str | Path, step: int | None = None, caption: str | None = None) -> None:
        """Record that an image (a PNG under ``figures/``) was produced, and send it to the trackers."""
        step = self.step if step is None else step
        self._write({"step": step, "time": round(time.time(), 3), "image": key, "path": str(path)})
        self.hub.image(key, Path(path), step, caption)

    def _write(self, row: dict[str, Any]) -> None:
        if self._file is None:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        try:
            self._file.write(json.dumps(clean) + "\n")
        except OSError as exc:
            raise TipiError(
                f"cannot write {self.path}: {exc.strerror}",
                key="permanences.logger",
                hint="Free disk space; lines written so far are intact.",
            ) from exc

    def checkpoint(self) -> None:
        """Make the lines written so far durable; note trackers that failed since in ``run.json``."""
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                raise TipiError(f"cannot flush {self.path}: {exc.strerror}", key="permanences.logger") from exc
        self._update_record({})

    def get_state(self) -> dict[str, Any]:
        """The latest value of every metric."""
        return dict(self.summary)

    def cleanup(self) -> None:
        """Finish every tracker (telling it how the run ended), note failures in ``run.json``, close the file.

        The executor calls ``cleanup()`` while the run's error (if any) is
        being handled, so ``sys.exc_info()`` tells how the run ended.
        """
        try:
            if self.hub.active:
                finished = self.hub.finish(self._outcome(sys.exc_info()[1]))
                self._update_record({n: {**info, "status": RunStatus.SUCCEEDED} for n, info in finished.items()})
        finally:
            self._close()

    def _outcome(self, exc: BaseException | None) -> RunOutcome:
        key = _select(self.controller.context.cfg, "run.objective")
        objective = self.summary.get(key) if key else None
        if objective is None and self.controller.results:
            objective = list(self.controller.results.values())[-1]
        if not isinstance(objective, (int, float)) or isinstance(objective, bool):
            objective = None
        outcome = RunOutcome(objective_key=key, objective=objective, summary=dict(self.summary))
        if isinstance(exc, TrialPruned):  # a search's pruner stopped it: an ordinary end, marked as such
            outcome.status = RunStatus.PRUNED
            outcome.summary["search/pruned_at"] = exc.step
        elif isinstance(exc, Interrupted):
            outcome.status = RunStatus.REQUEUED if exc.requeue else RunStatus.INTERRUPTED
            outcome.exit_code, outcome.requeue = exc.exit_code, exc.requeue
        elif exc is not None:
            outcome.status, outcome.exit_code = RunStatus.FAILED, 1
        return outcome

    def _update_record(self, infos: Mapping[str, Mapping[str, Any]], started: bool = False) -> None:
        """Merge tracker entries (and failures not yet written) into ``run.json``'s ``trackers``."""
        record = self.controller.context.record
        failures = {n: m for n, m in self.hub.take_failures().items() if self._reported.get(n) != m}
        if record is None or not (infos or failures):
            return
        entries = dict(record.data.get("trackers") or {})
        fields: dict[str, Any] = {}
        for name, info in infos.items():
            entry = {**(entries.get(name) or {}), **info}
            if started:
                entry.update(status=RunStatus.RUNNING, error=None)
                tracker = self.hub.trackers.get(name)
                if tracker is not None:
                    fields.update(tracker.record_fields(info))
            entries[name] = entry
        for name, message in failures.items():
            entries[name] = {**(entries.get(name) or {}), "status": RunStatus.FAILED, "error": message}
        record.update(trackers=entries, **fields)
        self._reported.update(failures)

    def _close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()


def _select(cfg: Any, key: str) -> Any:
    return OmegaConf.select(cfg, key) if isinstance(cfg, DictConfig) else None


def _multirun_job() -> tuple[str | None, int | None]:
    """The sweep directory and job number when Hydra runs this as a job of a multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            hydra = HydraConfig.get()
            return str(Path(hydra.sweep.dir).absolute()), int(hydra.job.num)
    except Exception:  # noqa: BLE001 - outside Hydra there is no sweep
        pass
    return None, None
