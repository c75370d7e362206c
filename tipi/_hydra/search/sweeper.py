"""``search=...``: tipi's Hydra sweeper on Optuna: asynchronous workers that pull trials, with pruning.

Hydra's Optuna sweeper asks for ``n_jobs`` trials, launches them as a batch
and waits for the slowest before it asks again, and cannot prune (a running
job has no way to report to it). Here the launcher starts ``workers`` jobs
(local processes, pool slots, or one SLURM array) and each is a
:class:`~tipi._hydra.search.worker.Worker`: ask, run the trial as a tipi run,
tell, until the study holds ``trials``. The study is Optuna's own storage, so
a search run again with the same sweep directory continues it, and
``optuna-dashboard`` opens it. When the workers are done the sweeper gives
back any trial whose worker died (and runs it once more if none is left to),
writes ``<sweep>/search.png`` and returns the best trial.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from tipi._hydra.search.settings import SearchSettings, read_settings
from tipi._hydra.search.study import LOCK, give_back_orphans, locked, open_study, unfinished
from tipi._hydra.search.worker import Worker
from tipi.core.errors import ConfigError
from tipi.runs.submit import launcher_wait, refuse

log = logging.getLogger(__name__)
WORKER_SUBDIR = ".workers/${hydra.job.num}"
ROUNDS = 3  # launches at most, when workers died and left trials to run


class Search(Sweeper):
    """tipi's search sweeper; ``params`` are the sweeper's config keys (also hydra-optuna-sweeper's)."""

    def __init__(self, **params: Any) -> None:
        self.params = {
            k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in params.items()
        }
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.settings: SearchSettings | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Keep what the workers need; the launcher is made in :meth:`sweep`, once the search is checked."""
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def sweep(self, arguments: list[str]) -> Any:
        """Check the search, start the workers, and return the best trial's value (or None)."""
        from hydra.core.plugins import Plugins

        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        try:
            self.settings = settings = read_settings(self.config, self.params, list(arguments))
            import optuna  # noqa: F401 - the optuna extra, checked before anything starts
        except ConfigError as exc:
            refuse(exc)
        except ImportError:
            refuse(ConfigError("a search needs Optuna: pip install 'tipi[optuna]'", key="search"))
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        study = open_study(settings)  # made here, once, before any worker opens it
        worker = Worker(settings, self.task_function, self.config, self.hydra_context)
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=self.hydra_context, task_function=worker, config=self.config
        )
        count = self._workers(settings, launcher)
        log.info(
            "search: %d trial(s) of %s, %d worker(s), study %s in %s",
            settings.trials,
            ", ".join(settings.space),
            count,
            settings.study_name,
            settings.storage,
        )
        for _ in range(ROUNDS):
            # a worker's config is the sweep's: the command line's fixed overrides, in a directory of its own
            worker_overrides = [*settings.fixed, f"hydra.sweep.subdir={WORKER_SUBDIR}"]
            launcher.launch([worker_overrides] * count, initial_job_idx=0)
            if not launcher_wait(self.config):
                return None
            with locked(sweep_dir / LOCK):
                give_back_orphans(study)
            if not unfinished(study):
                break
            count = 1  # a worker died and left a trial: one more runs it (and what else is left)
        return self._report(study, sweep_dir)

    def _workers(self, settings: SearchSettings, launcher: Any) -> int:
        """How many workers: ``launcher.workers`` (or ``n_jobs``), else one per pool slot, else up to 4."""
        from tipi._hydra.launchers.auto import Auto
        from tipi._hydra.launchers.in_process import InProcess
        from tipi._hydra.launchers.pool import Pool
        from tipi._hydra.launchers.slots import plan_pool

        if isinstance(launcher, Auto):  # launcher=auto: what it chose
            launcher = launcher.chosen
        if isinstance(launcher, InProcess):
            return 1  # in this process, one after another: a second worker would find nothing left
        if settings.workers is not None:
            return min(settings.workers, settings.trials)
        if isinstance(launcher, Pool):
            assert self.config is not None
            return min(settings.trials, plan_pool(self.config).capacity)
        return min(settings.trials, 4)

    def _report(self, study: Any, sweep_dir: Path) -> Any:
        """Log the best trial, write ``search.png``; the best value."""
        from optuna.trial import TrialState

        from tipi.runs.search_plot import write_plots

        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        write_plots(study, sweep_dir / "search.png")
        if not done:
            log.warning("search: no trial completed")
            return None
        best = study.best_trial
        # as hydra-optuna-sweeper wrote it, for scripts that read it
        OmegaConf.save(
            OmegaConf.create({"name": "optuna", "best_params": dict(best.params), "best_value": best.value}),
            sweep_dir / "optimization_results.yaml",
        )
        log.info(
            "search: best trial %d, value %.6g, %s",
            best.number,
            best.value,
            " ".join(f"{k}={v}" for k, v in best.params.items()),
        )
        return best.value
