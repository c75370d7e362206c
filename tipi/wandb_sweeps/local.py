"""A WandB sweep run here, with no server: WandB's own engine (the ``sweeps`` package) proposes.

Same semantics as on the server: ``grid`` runs its grid once (or up to
``run_cap``), ``random`` and ``bayes`` propose until ``run_cap`` (or this
agent's ``count``). The sweep's state is ``<sweep dir>/sweep.json``, so a
requeued sweep job continues: finished runs are history, an unfinished one
is resumed in its own directory, then the engine proposes the next.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tipi.core.errors import SweepError
from tipi.core.record import RunRecord, RunStatus, atomic_write_text
from tipi.wandb_sweeps.overrides import plain
from tipi.wandb_sweeps.spec import SweepSpec, import_sweeps
from tipi.wandb_sweeps.trial import FINISHED, Trial, TrialRunner

log = logging.getLogger(__name__)

STATE_FILE = "sweep.json"


class LocalSweep:
    """Proposes runs with ``sweeps.next_run`` and runs each through a :class:`TrialRunner`.

    The engine draws from Python's and NumPy's global random generators, which
    every run re-seeds with its own ``seed``; proposals therefore use a
    generator state of their own (seeded by ``sweep.seed``), swapped in and out
    around each proposal, so they neither repeat nor disturb the runs.
    """

    def __init__(self, spec: SweepSpec, sweep_dir: Path, runner: TrialRunner, seed: int | None = None) -> None:
        import numpy as np

        self.spec = spec
        self.sweep_dir = Path(sweep_dir)
        self.runner = runner
        self.trials: list[Trial] = []
        seed = spec.seed if spec.seed is not None else (seed or 0)
        self._py_state = random.Random(seed).getstate()
        self._np_state = np.random.RandomState(seed % 2**32).get_state()

    @property
    def state_path(self) -> Path:
        """``<sweep dir>/sweep.json``."""
        return self.sweep_dir / STATE_FILE

    def run(self) -> list[Trial]:
        """Run the sweep to its end (grid exhausted, ``run_cap`` or ``count`` reached); return every run."""
        self.trials = self._load()
        consecutive_failures = 0
        for trial in [t for t in self.trials if t.status not in FINISHED]:
            log.info("sweep: continuing run %s", trial.name)
            self._run(trial)
        started = 0
        while True:
            if self.spec.run_cap is not None and len(self.trials) >= self.spec.run_cap:
                break
            if self.spec.count is not None and started >= self.spec.count:
                break
            params = self._propose()
            if params is None:
                break  # the grid is exhausted
            trial = Trial(index=len(self.trials), name=self._free_name(), params=params)
            self.trials.append(trial)
            self._run(trial)
            started += 1
            consecutive_failures = 0 if trial.status == RunStatus.SUCCEEDED else consecutive_failures + 1
            if consecutive_failures >= self.spec.max_consecutive_failures:
                raise SweepError(
                    f"{consecutive_failures} sweep runs failed in a row; stopping the sweep",
                    key="sweep",
                    hint=f"Last error: {trial.error}",
                )
        return self.trials

    def _run(self, trial: Trial) -> None:
        self._save()
        try:
            self.runner.run(trial)
        finally:
            self._save()

    def _free_name(self) -> str:
        taken = {t.name for t in self.trials}
        index = len(self.trials)
        while str(index) in taken or (self.sweep_dir / str(index)).exists():
            index += 1
        return str(index)

    def _history(self) -> list[Any]:
        sweeps = import_sweeps()
        metric = self.spec.metric_name
        history = []
        for trial in self.trials:
            states: dict[str, Any] = {
                RunStatus.SUCCEEDED: sweeps.RunState.finished,
                RunStatus.FAILED: sweeps.RunState.failed,
            }
            state = states.get(trial.status, sweeps.RunState.running)
            summary = {metric: trial.objective} if metric and trial.objective is not None else {}
            # pydantic 2 fills SweepRun by the camelCase names (summaryMetrics), as WandB's server sends them.
            history.append(
                sweeps.SweepRun(
                    name=trial.name,
                    state=state,
                    summaryMetrics=summary,
                    config={k: {"value": v} for k, v in trial.params.items()},
                )
            )
        return history

    def _propose(self) -> dict[str, Any] | None:
        sweeps = import_sweeps()
        try:
            with self._own_random_state(), warnings.catch_warnings():
                if self.spec.method == "bayes":
                    from sklearn.exceptions import ConvergenceWarning

                    # The Gaussian process often stops early on a handful of runs; the
                    # ``sweeps`` package silences this warning too (globally, at import).
                    warnings.filterwarnings("ignore", category=ConvergenceWarning)
                suggestion = sweeps.next_run(self.spec.wandb, self._history())
        except ValueError as exc:  # the engine's way of saying the config cannot be searched
            raise SweepError(f"WandB's sweep engine refused this sweep: {exc}", key="sweep") from exc
        if suggestion is None:
            return None
        return {str(k): plain(v.get("value") if isinstance(v, dict) else v) for k, v in suggestion.config.items()}

    @contextlib.contextmanager
    def _own_random_state(self) -> Iterator[None]:
        import numpy as np

        outer_py, outer_np = random.getstate(), np.random.get_state()
        random.setstate(self._py_state)
        np.random.set_state(self._np_state)
        try:
            yield
        finally:
            self._py_state, self._np_state = random.getstate(), np.random.get_state()
            random.setstate(outer_py)
            np.random.set_state(outer_np)

    def _load(self) -> list[Trial]:
        data = RunRecord.load(self.state_path)
        if not data:
            return []
        return [Trial.from_json(t) for t in data.get("runs", [])]

    def _save(self) -> None:
        state = {
            "name": self.spec.name,
            "method": self.spec.method,
            "metric": self.spec.wandb.get("metric"),
            "runs": [t.to_json() for t in self.trials],
        }
        atomic_write_text(self.state_path, json.dumps(state, indent=2, default=str) + "\n")
