"""A search worker: one launcher job that takes trials from the study and runs each as a tipi run, until none are left.

Each trial is a full run in its own directory under the sweep directory
(``<sweep>/<trial number>``, or the directory of the trial it retries), run
through Hydra's ``run_job`` as any multirun job is: its config composed from
the sweep's config and the trial's values, ``.hydra/`` written, tipi's gate
before it trains (a sampled config the gate refuses fails the trial, naming
the key; the worker goes on). While it trains, every validation's monitored
value goes to the trial, and the pruner may stop it at that epoch boundary.
The trial's state and parameters are written into its ``run.json``
(``trial``). No worker waits for another.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from tipi._hydra.search.settings import SearchSettings
from tipi._hydra.search.space import trial_overrides
from tipi._hydra.search.study import WorkerLock, next_trial, open_study
from tipi.core import trial as trial_hook
from tipi.core.record import RunRecord

log = logging.getLogger(__name__)


class Worker:
    """The task function of a search's worker jobs (pickled with the launcher to every worker)."""

    def __init__(self, settings: SearchSettings, task: Any, master: DictConfig, hydra_context: Any) -> None:
        self.settings, self.task, self.master, self.hydra_context = settings, task, master, hydra_context
        self.sweep_dir = Path(str(master.hydra.sweep.dir)).absolute()

    def __call__(self, cfg: DictConfig) -> int:
        """Run trials until the study holds ``trials``; the number this worker ran."""
        from hydra.core.hydra_config import HydraConfig

        # the worker's number seeds its sampler (run_job has taken the hydra node out of cfg)
        number = HydraConfig.get().job.num if HydraConfig.initialized() else 0
        study = open_study(self.settings, worker=int(number or 0))
        worker = WorkerLock(self.sweep_dir)
        ran = 0
        try:
            while (trial := next_trial(study, self.settings, self.sweep_dir, worker)) is not None:
                self.run_trial(study, trial)
                ran += 1
        finally:
            worker.release()
        log.info("worker done: %d trial(s)", ran)
        return ran

    def trial_config(self, trial: Any, run_dir: Path) -> DictConfig:
        """The trial's config: the sweep's, with the fixed overrides and the trial's values."""
        from hydra.core.utils import filter_overrides

        overrides = [*self.settings.fixed, *trial_overrides(trial.params)]
        loader = self.hydra_context.config_loader
        cfg = loader.load_sweep_config(self.master, filter_overrides(overrides))
        with open_dict(cfg):
            if OmegaConf.select(cfg, "run") is not None:  # the trackers' tags: one run per trial, named by both
                tags = list(OmegaConf.select(cfg, "run.tags", default=[]) or [])
                cfg.run.tags = [*tags, f"search:{self.settings.study_name}", f"trial:{trial.number}"]
            cfg.hydra.job.num = trial.number
            cfg.hydra.job.id = f"trial_{trial.number}"
            cfg.hydra.sweep.subdir = run_dir.name
        return cfg

    def run_trial(self, study: Any, trial: Any) -> None:
        """Run one trial as a tipi run and tell the study how it ended."""
        from hydra.core.utils import JobStatus, run_job
        from optuna.trial import TrialState

        run_dir = Path(trial.user_attrs["run_dir"])
        t0 = time.monotonic()
        try:
            cfg = self.trial_config(trial, run_dir)
        except Exception as exc:  # noqa: BLE001 - a sampled config Hydra refuses fails the trial, not the worker
            log.error("trial %d: its config cannot be composed: %s", trial.number, exc)
            study.tell(trial, state=TrialState.FAIL)
            return
        pruned: dict[str, bool] = {"now": False}

        def reporter(step: int, value: float, final: bool) -> bool:
            trial.report(value, step)
            pruned["now"] = not final and trial.should_prune()
            return pruned["now"]

        with trial_hook.reporting_to(reporter):
            result = run_job(
                hydra_context=self.hydra_context,
                task_function=self.task,
                config=cfg,
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
            step, value = trial_hook.last_reported()
        objective = result.return_value if result.status == JobStatus.COMPLETED else None
        if pruned["now"]:
            state, values = TrialState.PRUNED, None
        elif isinstance(objective, (int, float)) and math.isfinite(objective):
            state, values = TrialState.COMPLETE, float(objective)
        else:
            state, values = TrialState.FAIL, None
        study.tell(trial, values, state=state)
        self._record(trial, run_dir, state.name.lower(), step, value, time.monotonic() - t0)

    def _record(
        self, trial: Any, run_dir: Path, state: str, step: int | None, value: float | None, seconds: float
    ) -> None:
        record = RunRecord(run_dir)
        if not record.path.exists():
            return
        record.update(
            trial={
                "number": trial.number,
                "study": self.settings.study_name,
                "state": state,
                "params": dict(trial.params),
                "last_step": step,
                "last_value": value,
                "retry_of": trial.user_attrs.get("retry_of"),
                "seconds": round(seconds, 3),
            }
        )
