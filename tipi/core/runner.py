"""The runner: maps one run onto builder -> controller -> executor.

Hydra multirun is Hydra's: each job calls ``PipelineRunner(cfg).run()``; a WandB
sweep (``tipi.wandb_sweeps``) calls it once a sweep run.
"""

from __future__ import annotations

import copy
import ctypes
import functools
import logging
import math
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tipi.core.builder import PipelineBuilder
from tipi.core.context import RunContext
from tipi.core.controller import PipelineController, cyclic_gc_paused
from tipi.core.errors import Interrupted
from tipi.core.executor import PipelineExecutor, chain_previous_handler
from tipi.core.provenance import run_provenance, set_deterministic
from tipi.core.record import RunRecord, RunStatus
from tipi.core.recover import rebuild
from tipi.core.resume import apply_resume_overrides, load_stored_config, stored_choices
from tipi.core.rundir import check_free, check_not_running, own
from tipi.core.trial import TrialPruned

log = logging.getLogger(__name__)


def seed_everything(seed: int | None) -> None:
    """Seed Python, NumPy and torch (when installed) from one integer."""
    if seed is None:
        return
    random.seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy is a dependency
        pass
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.manual_seed(seed)


def release_freed_memory() -> None:
    """Hand the memory a finished run freed back to the system (glibc ``malloc_trim``; elsewhere nothing).

    glibc keeps freed heap memory (released tensors, datasets) for reuse, so
    the resident memory of a process that runs many jobs (a Hydra multirun, a
    WandB sweep) creeps up although every permanence released what it held.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl): nothing to trim
        return None


def _hydra_output_dir() -> Path | None:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return None


def _hydra_overrides() -> list[str] | None:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():  # unresolved: an override may hold a ${...} the builder reports
        return [str(o) for o in OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False) or []]
    return None


def _finish_or_note(record: RunRecord, exc: BaseException, status: str, **fields: Any) -> None:
    """``record.finish``; if run.json cannot be written (a full disk), say so on ``exc`` instead."""
    try:
        record.finish(status, **fields)
    except OSError as record_exc:
        exc.add_note(f"run.json could not be updated to '{status}': {record_exc}")


class PipelineRunner:
    """The programmatic entry point: ``PipelineRunner(cfg).run()`` returns the objective."""

    def __init__(self, cfg: DictConfig, run_dir: str | Path | None = None, overrides: list[str] | None = None) -> None:
        """``overrides``: the command line's (Hydra's task overrides when Hydra runs this)."""
        self.cfg = cfg
        self.overrides = overrides if overrides is not None else _hydra_overrides()
        self.resumed_with: list[str] | None = None  # the overrides applied on top of a resumed run
        # how run.json is kept; a distributed rank swaps in one that only rank 0 writes (tipi.distributed)
        self.record_factory: Callable[[Path], RunRecord] = RunRecord
        # True for a process that joins a run another process owns (a rank other than 0):
        # it neither checks the directory nor writes run.json's start (its record_factory decides).
        self.joins_run = False
        resume = cfg.get("resume")
        if resume:
            run_dir = Path(str(resume)).expanduser().absolute()
            self.cfg = load_stored_config(run_dir)
            self.resumed_with = apply_resume_overrides(self.cfg, cfg, self.overrides or [], stored_choices(run_dir))
        self.run_dir = Path(run_dir) if run_dir is not None else (_hydra_output_dir() or Path.cwd())

    def build(self) -> PipelineController:
        """Check the config and construct the controller (nothing is initialized yet).

        This imports every ``_target_``'s module (torch among them), so Python's
        cyclic garbage collector is paused meanwhile (:func:`~tipi.core.controller.cyclic_gc_paused`).
        """
        with cyclic_gc_paused():
            builder = PipelineBuilder(self.cfg)
            permanences, specs = builder.build(check_permanences=False)
            controller = PipelineController(permanences, specs, RunContext(run_dir=self.run_dir, cfg=self.cfg))
            builder.check_permanences()  # last: the network imports its model's module (torch)
            return controller

    def run(self) -> float | None:
        """Build, run the pipeline once, and keep ``run.json`` true whatever happens; return the objective.

        A WandB sweep (a ``sweep`` key) is chosen at the entry (``tipi.cli``), not here.
        """
        try:
            return self._run_once()
        finally:
            release_freed_memory()

    def _run_once(self) -> float | None:
        """Hold the run directory while the pipeline runs in it; another process running there is refused."""
        fresh = self.resumed_with is None
        key = "run_dir" if fresh else "resume"
        if not self.joins_run:  # refused before the build imports torch (a rank but 0 joins rank 0's run)
            if fresh:  # a fresh run never writes into another's directory
                check_free(self.run_dir, self.overrides, key=key)
            else:
                check_not_running(self.run_dir, key=key)
        controller = self.build()  # a config error leaves no run record behind
        self.run_dir.mkdir(parents=True, exist_ok=True)
        lock = None if self.joins_run else own(self.run_dir, key=key)
        try:
            if fresh and not self.joins_run:  # again, now that no other process can start here meanwhile
                check_free(self.run_dir, self.overrides, key=key)
            return self._run_owned(controller)
        finally:
            if lock is not None:
                lock.release()

    def _run_owned(self, controller: PipelineController) -> float | None:
        record = self.record_factory(self.run_dir)
        controller.context.record = record
        if record.unreadable and not self.joins_run:
            # a resume Hydra started has just written its own .hydra/resume-<time>/: not an earlier attempt
            by_hydra = self.resumed_with is not None and _hydra_output_dir() is not None
            log.warning("%s", rebuild(record, resuming=by_hydra))
        before = copy.deepcopy(record.data)  # the record as the earlier attempts left it
        seed = self.cfg.get("seed")
        seed_everything(seed)
        extra = run_provenance(self.cfg)
        set_deterministic(extra["deterministic"])
        name = OmegaConf.select(self.cfg, "run.name")
        if self.resumed_with is None:
            record.start(name=name, seed=seed, overrides=self.overrides, extra=extra)
        else:  # the run's own overrides stay; this attempt's are recorded with it
            record.start(name=name, seed=seed, attempt_overrides=self.resumed_with, extra=extra)
        try:
            PipelineExecutor(controller).run()
        except TrialPruned as exc:  # a search's pruner stopped it at an epoch boundary, checkpoint written
            return self._end(controller, record, before, RunStatus.PRUNED, objective=exc.value, reason=str(exc))
        except Interrupted as exc:
            _finish_or_note(record, exc, RunStatus.REQUEUED if exc.requeue else RunStatus.INTERRUPTED, reason=str(exc))
            chained = chain_previous_handler(exc)
            if chained is not None:
                try:
                    chained()  # submitit's own handler: requeue the job, then exit
                except Exception as not_requeued:  # e.g. submitit's "timed-out too many times"
                    first_line = (str(not_requeued).splitlines() or [type(not_requeued).__name__])[0]
                    _finish_or_note(record, exc, RunStatus.FAILED, error=f"{exc}, not requeued: {first_line}")
                    raise
            raise
        except BaseException as exc:
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            _finish_or_note(record, exc, RunStatus.FAILED, error=f"{type(exc).__name__}: {first_line}")
            raise
        return self._end(controller, record, before, RunStatus.SUCCEEDED)

    def _end(
        self,
        controller: PipelineController,
        record: RunRecord,
        before: dict[str, Any],
        status: RunStatus,
        objective: float | None = None,
        reason: str | None = None,
    ) -> float | None:
        """Record the run's metrics and end it with ``status``; its objective (``objective`` if given)."""
        summary = self._summary(controller)
        if status == RunStatus.PRUNED:
            if summary:
                record.data["metrics"] = {**(before.get("metrics") or {}), **summary}
            record.finish(status, objective=objective, reason=reason)
            return objective
        if not summary and before.get("status") == RunStatus.SUCCEEDED:
            # every step was done (a finished run resumed): its results, and the record of them, stand
            log.info("nothing left to run: every step was done; run.json keeps its record")
            record.finish_as_before(before, RunStatus.SUCCEEDED, reason="nothing left to run")
            return _finite(before.get("objective"))
        # metrics of steps skipped in this attempt are still the run's (test metrics after a longer training)
        metrics = {**(before.get("metrics") or {}), **summary}
        if metrics:
            record.data["metrics"] = metrics
        objective = self._objective(controller, metrics)
        if objective is None:
            objective = _finite(before.get("objective"))
        record.finish(RunStatus.SUCCEEDED, objective=objective)
        return objective

    @staticmethod
    def _summary(controller: PipelineController) -> dict[str, Any]:
        logger = controller.permanences.get("logger")
        summary = getattr(logger, "summary", None)
        return dict(summary) if summary else {}

    def _objective(self, controller: PipelineController, metrics: dict[str, Any]) -> float | None:
        """``run.objective``'s value in the run's ``metrics``, else the last process's result."""
        key = OmegaConf.select(self.cfg, "run.objective")
        value: Any = None
        if key:
            value = metrics.get(key)
        if value is None and controller.results:
            value = list(controller.results.values())[-1]
        return _finite(value)


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
