"""tipi's ``TrainingProcess``, unmodified, with a :class:`~benchmarks.probes.step_clock.StepClock` attached.

Pointed at with ``processes.train._target_=benchmarks.probes.timed_train.TimedTrainingProcess``.
The loop is the parent class's own: the clock hangs on hooks (a forward
pre-hook on the model, a step post-hook on the optimizer) and on a proxy of the
``data`` permanence whose training loader is timed. Extra parameters:

- ``report_to``: write the per-step breakdown as JSON there when training ends;
- ``stop_after_steps``: after that many steps, write the wall-clock times at
  which the first step started (its forward) and ended (``first_step_start``,
  ``first_step_end``, ``time.time()``) to ``report_to`` and end the process at
  once (``os._exit``): the start-up measurement needs the time to the first
  step, not the rest of the run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.probes.step_clock import StepClock, TimedLoader
from tipi.processes.train import TrainingProcess


class _TimedData:
    """The ``data`` permanence as the training loop sees it, with the training loader timed."""

    def __init__(self, data: Any, clock: StepClock) -> None:
        self._data = data
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._data, name)

    def loader(self, split: str, epoch: int = 0, start_batch: int = 0) -> Any:
        """The permanence's loader; the training one timed."""
        loader = self._data.loader(split, epoch=epoch, start_batch=start_batch)
        return TimedLoader(loader, self._clock) if split == "train" else loader


class _RedrawCounter:
    """Counts the renders of the progress permanence's Rich display (one per redraw) while attached."""

    def __init__(self, progress: Any) -> None:
        # The permanence's live display; None in plain / none mode (or if its internals change).
        self.rich = getattr(progress, "display", None)
        self.count = 0
        if self.rich is not None:
            original = self.rich.get_renderables

            def counting() -> Any:
                self.count += 1
                return original()

            self.rich.get_renderables = counting  # an instance attribute shadows the method

    def detach(self) -> None:
        """Restore the display's own method."""
        if self.rich is not None:
            self.rich.__dict__.pop("get_renderables", None)


class TimedTrainingProcess(TrainingProcess):
    """``TrainingProcess`` with each step's fetch / compute / other time recorded."""

    def __init__(self, controller: Any, force: bool = False, report_to: str = "", stop_after_steps: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(controller, force, **kwargs)
        self.report_to = Path(report_to) if report_to else None
        self.stop_after_steps = stop_after_steps
        self.clock = StepClock()

    def _on_step_end(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.clock.on_step_end(optimizer, args, kwargs)
        if self.stop_after_steps and self.clock.steps >= self.stop_after_steps:
            end, end_counter = time.time(), time.perf_counter()
            start = end - (end_counter - self.clock.compute_start[0])
            if self.report_to is not None:
                self.report_to.write_text(json.dumps({"first_step_start": start, "first_step_end": end}),
                                          encoding="utf-8")
            os._exit(0)  # the rest of the run is not part of this measurement

    def execute(self) -> float | None:
        """Train with the clock attached; write the report."""
        model, optimizer = self.network.model, self.network.optimizer
        assert model is not None and optimizer is not None
        hooks = [model.register_forward_pre_hook(self.clock.on_forward),
                 optimizer.register_step_post_hook(self._on_step_end)]
        self.data = _TimedData(self.data, self.clock)  # type: ignore[assignment]
        redraws = _RedrawCounter(self.controller.permanences.get("progress"))
        start = time.perf_counter()
        try:
            return super().execute()
        finally:
            seconds = time.perf_counter() - start
            redraws.detach()
            for hook in hooks:
                hook.remove()
            self._report({"redraws": redraws.count if redraws.rich is not None else None,
                          "train_seconds": seconds})

    def _report(self, extra: dict[str, Any]) -> None:
        if self.report_to is None:
            return
        import torch

        report = {
            "threads": torch.get_num_threads(),
            "log_every": self.log_every,
            "checkpoint_every": self.checkpoint_every,
            "batch_size": self.data.batch_size,
            "steps": self.clock.breakdown(),
            **extra,
        }
        self.report_to.write_text(json.dumps(report), encoding="utf-8")
