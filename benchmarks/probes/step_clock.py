"""Timestamps around each training step, taken by hooks, so the loop being measured stays unmodified.

The same clock instruments tipi's ``TrainingProcess`` (through
:mod:`benchmarks.probes.timed_train`) and the plain PyTorch loop
(``benchmarks/baselines/plain_train.py``), so both are measured alike:

- ``fetch``: the DataLoader's ``next()`` (wrapped by :meth:`StepClock.timed`);
- ``compute``: from the model's forward pre-hook (training mode only) to the
  optimizer's step post-hook: forward, loss, backward and ``optimizer.step()``;
- ``other``: the rest of the iteration, i.e. everything the loop itself does
  between fetching a batch and the next fetch (moving the batch to the device,
  ``zero_grad``, and in tipi: the ``atomic()`` block, the step counters, loss
  accumulation, logging and checkpointing every n steps, the progress bar).

Stdlib only: importing it costs nothing a measurement would see.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

_now = time.perf_counter


class StepClock:
    """Collects four timestamps per training step (seconds, ``time.perf_counter``)."""

    def __init__(self) -> None:
        self.fetch_start: list[float] = []
        self.fetch_end: list[float] = []
        self.compute_start: list[float] = []
        self.compute_end: list[float] = []

    def timed(self, batches: Iterable[Any]) -> Iterator[Any]:
        """Yield from ``batches``, timing each ``next()``."""
        iterator = iter(batches)
        while True:
            t0 = _now()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            t1 = _now()
            self.fetch_start.append(t0)
            self.fetch_end.append(t1)
            yield batch

    def on_forward(self, module: Any, _args: Any) -> None:
        """A forward pre-hook: the compute part of a training step starts (evaluation is ignored)."""
        if module.training:
            self.compute_start.append(_now())

    def on_step_end(self, _optimizer: Any, _args: Any, _kwargs: Any) -> None:
        """An optimizer step post-hook: the compute part of a training step ends."""
        self.compute_end.append(_now())

    @property
    def steps(self) -> int:
        """Completed training steps so far."""
        return len(self.compute_end)

    def breakdown(self) -> dict[str, list[float]]:
        """Per step (all but the last, whose period is open): ``period``, ``fetch``, ``compute``, ``other``.

        ``period`` runs from one fetch start to the next; ``other = period - fetch - compute``.
        """
        n = min(len(self.fetch_start), len(self.compute_start), len(self.compute_end)) - 1
        out: dict[str, list[float]] = {"period": [], "fetch": [], "compute": [], "other": []}
        for i in range(max(n, 0)):
            period = self.fetch_start[i + 1] - self.fetch_start[i]
            fetch = self.fetch_end[i] - self.fetch_start[i]
            compute = self.compute_end[i] - self.compute_start[i]
            out["period"].append(period)
            out["fetch"].append(fetch)
            out["compute"].append(compute)
            out["other"].append(period - fetch - compute)
        return out


class TimedLoader:
    """A DataLoader whose iteration is timed by a :class:`StepClock`; ``len()`` passes through."""

    def __init__(self, loader: Any, clock: StepClock) -> None:
        self.loader = loader
        self.clock = clock

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        return self.clock.timed(self.loader)
