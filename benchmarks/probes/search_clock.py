"""Times tipi's own steps of every trial inside a real search: ``python -m benchmarks.probes.search_clock ARGS``.

Runs ``python -m tipi ARGS`` (a search with ``launcher=local``, so the one
worker runs in this process) with timers wrapped around the steps a search
adds to a run, and writes them as JSON to ``$TIPI_BENCH_SEARCH_CLOCK`` when
the process ends, keyed by trial number:

- ``ask``: :func:`tipi._hydra.search.study.next_trial` (the study's lock, the
  check for trials whose worker died, the count, Optuna's ``ask`` and the
  trial's attributes, each a journal write);
- ``compose``: :meth:`~tipi._hydra.search.worker.Worker.trial_config`;
- ``gate``: :meth:`tipi.core.runner.PipelineRunner.build` (the check of the
  trial's config and the construction of its pipeline, before it trains);
- ``tell``: Optuna's ``Study.tell`` (the trial's state and value, a journal write);
- ``record``: the trial's entry in its ``run.json`` (``Worker._record``);
- ``report``: each epoch's report to the trial and the pruner's decision
  (:func:`tipi.core.trial.report`: a journal write and a read of the rung);
- ``run_job`` and ``run_trial``: Hydra's ``run_job`` of the trial, and the whole trial.

The timers add two ``perf_counter`` calls a step; nothing else changes.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

OUT_ENV = "TIPI_BENCH_SEARCH_CLOCK"
_times: dict[int, dict[str, Any]] = defaultdict(lambda: defaultdict(list))
_current: dict[str, int | None] = {"trial": None}


def _number(result: Any, args: tuple[Any, ...]) -> int | None:
    """The trial a step belongs to: the one it returned, the one it was given, or the one running."""
    for obj in (result, *args):
        if type(obj).__name__ in ("Trial", "FrozenTrial") and isinstance(obj.number, int):
            return obj.number
    return _current["trial"]


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its wall time appended to its trial's ``name`` list (also when it raises)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        result = None
        try:
            result = fn(*args, **kwargs)
            return result
        finally:
            seconds = time.perf_counter() - t0
            number = _number(result, args)
            if number is not None:
                _times[number][name].append(seconds)

    return wrapper


def _run_trial(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``Worker.run_trial`` that marks its trial as the one running, for the steps inside it."""
    timed = _timed("run_trial", fn)

    @functools.wraps(fn)
    def wrapper(self: Any, study: Any, trial: Any) -> Any:
        _current["trial"] = trial.number
        try:
            return timed(self, study, trial)
        finally:
            _current["trial"] = None

    return wrapper


def install() -> None:
    """Wrap the timed steps (module attributes, so the callers' look-ups find the wrappers)."""
    import hydra.core.utils
    import optuna.study

    from tipi._hydra.search import worker
    from tipi.core import runner, trial

    steps: list[tuple[Any, str, str]] = [
        (worker, "next_trial", "ask"),
        (worker.Worker, "trial_config", "compose"),
        (worker.Worker, "_record", "record"),
        (runner.PipelineRunner, "build", "gate"),
        (optuna.study.Study, "tell", "tell"),
        (trial, "report", "report"),
        (hydra.core.utils, "run_job", "run_job"),
    ]
    for owner, attribute, label in steps:
        setattr(owner, attribute, _timed(label, getattr(owner, attribute)))
    setattr(worker.Worker, "run_trial", _run_trial(worker.Worker.run_trial))  # noqa: B010 - mypy: no method-assign


def write() -> None:
    """The timings as JSON to ``$TIPI_BENCH_SEARCH_CLOCK`` (once)."""
    out = os.environ.get(OUT_ENV)
    if out and _times:
        data = {str(k): dict(v) for k, v in sorted(_times.items())}
        with open(out, "w", encoding="utf-8") as f:
            json.dump(data, f)
        _times.clear()


def main() -> None:
    """``python -m tipi`` with the timers installed."""
    from tipi.cli import main as tipi_main

    install()
    atexit.register(write)
    try:
        tipi_main()
    finally:
        write()


if __name__ == "__main__":
    main()
