"""A run that is a trial of a search: report intermediate values to it, and stop when its pruner says so.

The search's worker (:mod:`tipi._hydra.search.worker`) sets a reporter
before it runs a trial; the training process calls :func:`report` with its
monitored metric after every validation (and a ``@pipeline_process`` function
can, through :func:`tipi.helpers.report_intermediate`). Outside a search
:func:`report` does nothing. When the pruner says stop, :func:`report` raises
:class:`TrialPruned` at that epoch boundary, after the checkpoint; the runner
ends the run ``pruned`` with its metrics and checkpoint kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

Reporter = Callable[[int, float, bool], bool]  # (step, value, final) -> prune now?

_reporter: Reporter | None = None
_last: dict[str, float | int | None] = {"step": None, "value": None}


class TrialPruned(Exception):
    """The search's pruner stopped this run at an epoch boundary; its checkpoint and metrics are kept."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"pruned by the search after step {step} (value {value:.6g})")
        self.step, self.value = step, value


def in_trial() -> bool:
    """Whether this run is a trial of a search."""
    return _reporter is not None


def report(step: int, value: float, final: bool = False) -> None:
    """Report ``value`` at ``step`` (an epoch) to the search's trial; raise :class:`TrialPruned` to stop here.

    ``final``: the run's last step; reported, never pruned (it has trained in full).
    """
    if _reporter is None:
        return
    _last.update(step=step, value=value)
    if _reporter(int(step), float(value), final) and not final:
        raise TrialPruned(int(step), float(value))


def last_reported() -> tuple[int | None, float | None]:
    """The last step and value reported in this trial."""
    step, value = _last["step"], _last["value"]
    return (int(step) if step is not None else None, float(value) if value is not None else None)


@contextmanager
def reporting_to(reporter: Reporter) -> Iterator[None]:
    """Run the block as a trial whose intermediate values go to ``reporter``."""
    global _reporter
    previous = _reporter
    _reporter = reporter
    _last.update(step=None, value=None)
    try:
        yield
    finally:
        _reporter = previous
