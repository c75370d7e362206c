"""The runner: maps one run (or a WandB sweep) onto builder -> controller -> executor.

Hydra multirun is Hydra's: each job calls ``PipelineRunner(cfg).run()``.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
import os
import random
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tipi.core.builder import PipelineBuilder
from tipi.core.context import RunContext
from tipi.core.controller import PipelineController, cyclic_gc_paused
from tipi.core.errors import ConfigError, Interrupted
from tipi.core.executor import PipelineExecutor, chain_previous_handler
from tipi.core.record import RunRecord

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

    if HydraConfig.initialized():
        return list(HydraConfig.get().overrides.task)
    return None


def _finish_or_note(record: RunRecord, exc: BaseException, status: str, **fields: Any) -> None:
    """``record.finish``; if run.json cannot be written (a full disk), say so on ``exc`` instead."""
    try:
        record.finish(status, **fields)
    except OSError as record_exc:
        exc.add_note(f"run.json could not be updated to '{status}': {record_exc}")


class PipelineRunner:
    """The programmatic entry point: ``PipelineRunner(cfg).run()`` returns the objective."""

    def __init__(self, cfg: DictConfig, run_dir: str | Path | None = None) -> None:
        self.cfg = cfg
        resume = cfg.get("resume")
        if resume:
            run_dir = Path(str(resume)).expanduser().absolute()
            self.cfg = self._load_resumed_config(run_dir)
        self.run_dir = Path(run_dir) if run_dir is not None else (_hydra_output_dir() or Path.cwd())

    @staticmethod
    def _load_resumed_config(run_dir: Path) -> DictConfig:
        stored = run_dir / ".hydra" / "config.yaml"
        if not run_dir.is_dir():
            raise ConfigError(f"'{run_dir}' is not a directory", key="resume",
                              hint="Pass a run directory such as outputs/<date>/<time>.")
        if not stored.is_file():
            raise ConfigError(f"'{run_dir}' holds no tipi run (no .hydra/config.yaml)", key="resume",
                              hint="Pass a directory that a tipi run created.")
        cfg = OmegaConf.load(stored)
        assert isinstance(cfg, DictConfig)
        return cfg

    def build(self) -> PipelineController:
        """Check the config and construct the controller (nothing is initialized yet).

        This imports every ``_target_``'s module (torch among them), so Python's
        cyclic garbage collector is paused meanwhile (:func:`~tipi.core.controller.cyclic_gc_paused`).
        """
        with cyclic_gc_paused():
            permanences, specs = PipelineBuilder(self.cfg).build()
            run_dir = self.run_dir
            resume = (run_dir / "checkpoints" / "last.pt").exists() or (run_dir / "run.json").exists()
            context = RunContext(run_dir=run_dir, cfg=self.cfg, seed=self.cfg.get("seed"), resume=resume)
            return PipelineController(permanences, specs, context)

    def run(self) -> float | None:
        """Run once (or a WandB sweep when ``sweep`` is configured); return the objective."""
        if self.cfg.get("sweep") is not None:
            from tipi.sweeps import run_sweep

            return run_sweep(self)
        return self.run_once()

    def run_once(self) -> float | None:
        """Build, run the pipeline, and keep ``run.json`` true whatever happens."""
        try:
            return self._run_once()
        finally:
            release_freed_memory()

    def _run_once(self) -> float | None:
        controller = self.build()  # a config error leaves no run record behind
        self.run_dir.mkdir(parents=True, exist_ok=True)
        record = RunRecord(self.run_dir)
        controller.context.record = record
        seed = self.cfg.get("seed")
        seed_everything(seed)
        record.start(name=OmegaConf.select(self.cfg, "run.name"), seed=seed, overrides=_hydra_overrides())
        try:
            PipelineExecutor(controller).run()
        except Interrupted as exc:
            _finish_or_note(record, exc, "requeued" if exc.requeue else "interrupted", reason=str(exc))
            chained = chain_previous_handler(exc)
            if chained is not None:
                try:
                    chained()  # submitit's own handler: requeue the job, then exit
                except Exception as not_requeued:  # e.g. submitit's "timed-out too many times"
                    first_line = (str(not_requeued).splitlines() or [type(not_requeued).__name__])[0]
                    _finish_or_note(record, exc, "failed", error=f"{exc}, not requeued: {first_line}")
                    raise
            raise
        except BaseException as exc:
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            _finish_or_note(record, exc, "failed", error=f"{type(exc).__name__}: {first_line}")
            raise
        objective = self._objective(controller)
        summary = self._summary(controller)
        if summary:
            record.data["metrics"] = summary
        record.finish("succeeded", objective=objective)
        return objective

    @staticmethod
    def _summary(controller: PipelineController) -> dict[str, Any]:
        logger = controller.permanences.get("logger")
        summary = getattr(logger, "summary", None)
        return dict(summary) if summary else {}

    def _objective(self, controller: PipelineController) -> float | None:
        key = OmegaConf.select(self.cfg, "run.objective")
        value: Any = None
        if key:
            value = self._summary(controller).get(key)
        if value is None and controller.results:
            value = list(controller.results.values())[-1]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        return None
