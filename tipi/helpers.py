"""Helpers that work in a plain script and inside a pipeline, unchanged.

``progress_bar``, ``logger`` and ``device_manager`` look at the pipeline that
is running in this context (``tipi.core.context.current_controller``, set by
the executor). Inside one they use its permanences - the ``progress``
display, the ``logger`` (``metrics.jsonl``, WandB) and the ``device``; in a
plain script they stand alone::

    from tipi.helpers import device_manager, logger, progress_bar

    logger.init(project="exp")                # a WandB run (WANDB_MODE honoured); no-op in a pipeline
    device = device_manager.get_device()      # the best device; the pipeline's in a pipeline
    for epoch in progress_bar(range(10), desc="epoch"):
        logger.log({"loss": train(device)})
    logger.finish()

Pipeline state is never held here: it comes through the ContextVar each
call. The only state these objects keep is what a script owns by itself
(its standalone WandB run, its resolved device).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from tipi.core.context import get_current_controller
from tipi.permanences.progress import use_progress

if TYPE_CHECKING:
    import torch

__all__ = ["DeviceManager", "Logger", "device_manager", "logger", "progress_bar", "report_intermediate"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def progress_bar(iterable: Iterable[T], desc: str = "working", total: float | None = None) -> Iterator[T]:
    """Yield from ``iterable`` while a bar called ``desc`` counts the items.

    In a pipeline the bar is a task of the pipeline's one display (nested
    under whatever bar is open); in a script it is a standalone display -
    Rich on a terminal, plain lines otherwise - shared by nested
    ``progress_bar`` loops. ``total`` defaults to ``len(iterable)`` when it has one.
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]  # iterables without a length are handled by the caller's except
        except TypeError:
            total = None  # a generator: the bar counts without a total
    with use_progress() as manager, manager.task(desc, total=total) as bar:
        advance = bar.advance  # bound once: the loop below pays one call per item
        for item in iterable:
            yield item
            advance()


class Logger:
    """Log metrics to the pipeline's ``logger`` permanence, or to a standalone WandB run.

    In a pipeline: ``log`` goes to ``controller.permanences["logger"]`` (which
    writes ``metrics.jsonl`` and, for the WandB logger, WandB); ``init`` and
    ``finish`` do nothing, because the pipeline owns the run. In a script:
    ``init`` starts a WandB run - online, offline or disabled per ``WANDB_MODE``
    - and ``log`` sends metrics to it and nowhere else.
    """

    def __init__(self) -> None:
        self.run: Any = None  # the standalone wandb run; never a pipeline's
        self._warned: set[str] = set()  # each message once per script, not once per step

    @staticmethod
    def _pipeline_logger() -> tuple[bool, Any]:
        controller = get_current_controller()
        if controller is None:
            return False, None
        return True, controller.permanences.get("logger")

    def init(self, project: str | None = None, **wandb_kwargs: Any) -> Any:
        """Start a standalone WandB run (returned); in a pipeline, return its logger and start nothing.

        ``wandb_kwargs`` go to ``wandb.init`` (``entity``, ``config``, ``name``,
        ``mode``...). A run this object already holds is finished first.
        """
        in_pipeline, pipeline_logger = self._pipeline_logger()
        if in_pipeline:
            return pipeline_logger
        import wandb  # heavy: only a script that logs pays for it

        if self.run is not None:
            self.finish()
        self.run = wandb.init(project=project, **wandb_kwargs)
        return self.run

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record ``metrics`` at ``step``: to the pipeline's logger, else to the standalone run."""
        in_pipeline, pipeline_logger = self._pipeline_logger()
        if in_pipeline:
            if pipeline_logger is not None:
                pipeline_logger.log(metrics, step=step)
            else:
                self._warn_once("this pipeline has no 'logger' permanence; metrics are dropped")
            return
        if self.run is None:
            # A function written for pipelines also runs as a script; losing its
            # metrics there should not crash it, but should not be silent either.
            self._warn_once("logger.log() before logger.init(): metrics are dropped")
            return
        self.run.log(dict(metrics), step=step)

    def finish(self) -> None:
        """Finish the standalone WandB run, if one is open. In a pipeline: nothing (the pipeline finishes its run)."""
        run, self.run = self.run, None
        if run is not None:
            run.finish()

    def _warn_once(self, message: str) -> None:
        # logging, not warnings: a script's metrics are not a Python API misuse.
        if message not in self._warned:
            self._warned.add(message)
            log.warning(message)


class DeviceManager:
    """The device to compute on: the pipeline's ``device`` permanence, else the best one here."""

    def __init__(self) -> None:
        self._resolved: dict[str, torch.device] = {}

    def get_device(self, spec: str = "auto") -> torch.device:
        """In a pipeline, its device (``spec`` is ignored: the config decides); else ``spec`` resolved.

        ``auto`` picks the CUDA device with the most free memory, else MPS, else
        the CPU, exactly as the ``device`` permanence does. A script's answer is
        cached per spec, so calling this in a loop costs nothing.
        """
        controller = get_current_controller()
        if controller is not None:
            perm = controller.permanences.get("device")
            device = getattr(perm, "device", None)
            if device is not None:
                return device
        cached = self._resolved.get(spec)
        if cached is None:
            from tipi.permanences.device import resolve_device  # imports torch: only when asked

            cached = self._resolved[spec] = resolve_device(spec)
        return cached


logger = Logger()
device_manager = DeviceManager()


def report_intermediate(value: float, step: int, final: bool = False) -> None:
    """Report ``value`` at ``step`` (an epoch) to the search trial this run is; nothing outside a search.

    Call it after each evaluation of a ``@pipeline_process`` function's own
    loop: when the search's pruner says so it raises ``TrialPruned``, which
    ends the run ``pruned`` (save a checkpoint before calling, to keep it).
    ``final=True`` at the last step: reported, never pruned.
    """
    from tipi.core import trial

    trial.report(step, value, final)
