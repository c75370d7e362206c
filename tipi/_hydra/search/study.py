"""The study of a search, in Optuna's own storage, and the rules by which workers take trials from it.

The study lives in a journal file in the sweep directory by default
(Optuna's ``JournalFileBackend``: appends to one file, works on a shared file
system without a database; ``optuna-dashboard <sweep>/study.journal`` opens
it), or in the RDB ``search.storage`` names. Workers take trials under one
``flock`` on ``<sweep>/.search.lock``, so they never start more trials than
``trials`` between them. Each worker holds a lock of its own while it lives
(``<sweep>/.workers/<host>-<pid>.lock``) and records it on every trial it
runs: a trial still running whose worker's lock is free lost its worker (a
SIGKILL, a preemption, a requeue) and is given back: marked failed and
``gave_back``, and enqueued again with the same parameters and the same run
directory, so the next worker continues it from its ``last.pt``. A trial given
back is not counted; its retry is.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tipi._hydra.search.settings import SearchSettings
from tipi.core.errors import ConfigError

LOCK = ".search.lock"
WORKERS = ".workers"
GAVE_BACK = "gave_back"


def make_sampler(settings: SearchSettings, worker: int = 0) -> Any:
    """The sampler by name, or an Optuna-sweeper ``sampler`` node instantiated; seeded ``seed + worker``.

    Each worker samples on its own: with one seed, two workers that see the
    same finished trials would propose the same values.
    """
    import optuna

    spec = settings.sampler
    if isinstance(spec, dict):
        from hydra.utils import instantiate

        if spec.get("seed") is not None:
            spec = {**spec, "seed": int(spec["seed"]) + worker}
        return instantiate(spec)
    seed = None if settings.seed is None else int(settings.seed) + worker
    if spec == "grid":
        from optuna.distributions import CategoricalDistribution, IntDistribution

        grid: dict[str, list[Any]] = {}
        for key, dist in settings.space.items():
            if isinstance(dist, CategoricalDistribution):
                grid[key] = list(dist.choices)
            elif isinstance(dist, IntDistribution) and not dist.log:
                grid[key] = list(range(dist.low, dist.high + 1, dist.step))
            else:
                raise ConfigError(
                    f"search.sampler=grid needs choices or ranges; '{key}' is an interval",
                    key=f"search.params.{key}",
                    hint="Use choice(...) or range(...), or another sampler.",
                )
        return optuna.samplers.GridSampler(grid, seed=seed)
    if spec == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if spec == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if spec == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(settings: SearchSettings) -> Any:
    """``asha`` (successive halving), ``hyperband``, ``median`` or ``none``; a node with ``_target_`` as given."""
    import optuna

    spec = settings.pruner
    if isinstance(spec, dict):
        from hydra.utils import instantiate

        return instantiate(spec)
    if spec == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=settings.min_epochs, reduction_factor=settings.reduction_factor
        )
    if spec == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=settings.min_epochs,
            max_resource=max(settings.max_epochs, settings.min_epochs),
            reduction_factor=settings.reduction_factor,
        )
    if spec == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=settings.min_epochs - 1)
    return optuna.pruners.NopPruner()


def open_storage(storage: str) -> Any:
    """Optuna's storage: a journal file (a path) or an RDB (a URL)."""
    if "://" in storage:
        return storage
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    Path(storage).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(storage))


def open_study(settings: SearchSettings, worker: int = 0) -> Any:
    """The study, created on first use and loaded afterwards (a search run again continues it)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        storage=open_storage(settings.storage),
        study_name=settings.study_name,
        direction="maximize" if settings.direction == "maximize" else "minimize",
        sampler=make_sampler(settings, worker),
        pruner=make_pruner(settings),
        load_if_exists=True,
    )


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if need be) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class WorkerLock:
    """This worker's lock, held while it lives; its path is recorded on each trial it runs."""

    def __init__(self, sweep_dir: Path) -> None:
        self.path = sweep_dir / WORKERS / f"{socket.gethostname()}-{os.getpid()}.lock"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the worker's life
        fcntl.flock(self.file, fcntl.LOCK_EX)

    def release(self) -> None:
        """Let go (the worker is done)."""
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def worker_gone(lock_path: str | None) -> bool:
    """Whether the worker that held ``lock_path`` has ended (its lock is free); False when it cannot be told."""
    if not lock_path or not Path(lock_path).exists():
        return False
    try:
        with open(lock_path, "a+", encoding="utf-8") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(f, fcntl.LOCK_UN)
            return True
    except OSError:
        return False


def give_back_orphans(study: Any) -> list[int]:
    """Trials whose worker is gone: failed and ``gave_back``, and enqueued again (same parameters, same directory)."""
    from optuna.trial import TrialState

    given: list[int] = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not worker_gone(trial.user_attrs.get("worker")):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, GAVE_BACK, True)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        attrs = {"retry_of": trial.number, "run_dir": trial.user_attrs.get("run_dir")}
        study.enqueue_trial(dict(trial.params), user_attrs=attrs)
        given.append(trial.number)
    return given


def counted(study: Any) -> list[Any]:
    """The trials that count toward ``trials``: all but those given back."""
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(GAVE_BACK)]


def next_trial(study: Any, settings: SearchSettings, sweep_dir: Path, worker: WorkerLock) -> Any | None:
    """The next trial for this worker (an enqueued retry first), or None when the study has all it needs."""
    from optuna.trial import TrialState

    with locked(sweep_dir / LOCK):
        give_back_orphans(study)
        trials = counted(study)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        if not waiting and len(trials) >= settings.trials:
            return None
        trial = study.ask(settings.space)
        trial.set_user_attr("worker", str(worker.path))
        if "run_dir" not in trial.user_attrs or not trial.user_attrs.get("run_dir"):
            trial.set_user_attr("run_dir", str(sweep_dir / str(trial.number)))
        return trial


def unfinished(study: Any) -> list[Any]:
    """Counted trials still running or waiting."""
    from optuna.trial import TrialState

    return [t for t in counted(study) if t.state in (TrialState.RUNNING, TrialState.WAITING)]
