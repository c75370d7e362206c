"""One sweep run: its own composed config, controller, output subdirectory and WandB run."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from tipi.core.record import RunRecord, RunStatus
from tipi.wandb_sweeps import compose
from tipi.wandb_sweeps.overrides import param_overrides, plain
from tipi.wandb_sweeps.spec import SweepSpec

log = logging.getLogger(__name__)

# Statuses after which a run is not continued (``run.json`` spelling).
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED)


@dataclass
class Trial:
    """What a sweep knows about one of its runs; saved in ``sweep.json`` and summarised at the end."""

    index: int
    name: str
    params: dict[str, Any]
    status: str = RunStatus.PENDING
    objective: float | None = None
    duration_s: float | None = None
    error: str | None = None
    wandb_run_id: str | None = None
    overrides: list[str] = field(default_factory=list)

    def run_dir(self, sweep_dir: Path) -> Path:
        """``<sweep dir>/<name>``."""
        return Path(sweep_dir) / self.name

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Trial:
        """The inverse of :meth:`to_json` (unknown keys ignored)."""
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in names})


def _finite(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


class TrialRunner:
    """Runs trials of one sweep: compose, save ``.hydra/``, ``PipelineRunner.run()``, read the metric."""

    def __init__(
        self, spec: SweepSpec, sweep_dir: Path, base_overrides: Sequence[str], sweep_id: str | None = None
    ) -> None:
        self.spec = spec
        self.sweep_dir = Path(sweep_dir)
        self.base_overrides = list(base_overrides)
        self.sweep_id = sweep_id

    def configs_for(self, trial: Trial) -> tuple[DictConfig, DictConfig]:
        """The trial's full config (``hydra`` node included) and its job config.

        A trial that already started (its directory has ``run.json``) keeps the
        job config stored in its ``.hydra/`` and is continued from its checkpoint.
        """
        run_dir = trial.run_dir(self.sweep_dir)
        hydra_dir = run_dir / ".hydra"
        if (hydra_dir / "config.yaml").is_file() and (run_dir / "run.json").is_file():
            if not trial.overrides and (hydra_dir / "overrides.yaml").is_file():
                trial.overrides = [str(o) for o in OmegaConf.load(hydra_dir / "overrides.yaml")]
            full = compose.compose(trial.overrides, run_dir)
            job = OmegaConf.load(hydra_dir / "config.yaml")
            assert isinstance(job, DictConfig)
            return full, job
        params = param_overrides(trial.params, self.spec.parameters, self.spec.allow)
        trial.overrides = compose.run_overrides(self.base_overrides, params)
        full = compose.compose(trial.overrides, run_dir)
        job = compose.job_config(full)
        if self.sweep_id is None and OmegaConf.select(job, "run.group") is None:
            # Offline runs of a local sweep, synced later, show up together in WandB.
            with open_dict(job):
                job.run.group = self.spec.name or f"sweep-{self.sweep_dir.name}"
        hparams = OmegaConf.select(job, "permanences.hparams")
        if isinstance(hparams, DictConfig) and "_target_" in hparams:
            # The hyperparameters permanence hands processes the sweep's choices.
            with open_dict(hparams):
                hparams.sweep_params = dict(trial.params)
        compose.save(full, job, trial.overrides, run_dir)
        return full, job

    def run(self, trial: Trial) -> Trial:
        """Run ``trial`` to its end; a failed run is recorded, not raised (an interruption is raised)."""
        from tipi.core.runner import PipelineRunner

        run_dir = trial.run_dir(self.sweep_dir)
        start = time.monotonic()
        trial.status = RunStatus.RUNNING
        shown = " ".join(f"{k}={v}" for k, v in trial.params.items())
        log.info("sweep run %s: %s", trial.name, shown)
        try:
            full, job = self.configs_for(trial)
            with compose.hydra_job(full):
                PipelineRunner(job, run_dir=run_dir).run()
        except Exception as exc:  # noqa: BLE001 - one failed run does not end the sweep
            trial.error = (str(exc).splitlines() or [type(exc).__name__])[0]
            log.error("sweep run %s failed: %s", trial.name, trial.error)
        finally:
            trial.duration_s = round(time.monotonic() - start, 3)
            self._read_back(trial, run_dir)
        return trial

    def _read_back(self, trial: Trial, run_dir: Path) -> None:
        """Status, metric and WandB id from the run's ``run.json``; it learns the sweep it belongs to."""
        record_path = run_dir / "run.json"
        data = RunRecord.load(record_path)
        if data is None:  # it failed before the run started (e.g. its config did not compose)
            trial.status = RunStatus.FAILED
            return
        trial.status = str(data.get("status") or RunStatus.FAILED)
        if trial.status == RunStatus.RUNNING:  # ended without finishing its record: killed
            trial.status = RunStatus.FAILED
        trial.wandb_run_id = data.get("wandb_run_id")
        # The sweep's metric, as WandB's server reads it: the run's last logged value.
        name = self.spec.metric_name
        trial.objective = _finite((data.get("metrics") or {}).get(name) if name else data.get("objective"))
        if trial.error is None and data.get("error"):
            trial.error = str(data["error"])
        record = RunRecord(run_dir)
        record.update(
            sweep={
                "dir": str(self.sweep_dir),
                "id": self.sweep_id,
                "name": self.spec.name,
                "run": trial.name,
                "params": plain(trial.params),
            }
        )
