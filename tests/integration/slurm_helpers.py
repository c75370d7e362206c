"""Helpers for sweep tests: the local SLURM cluster, a misbehaving process, polling.

Sweep jobs run in other processes (submitit, SLURM), which import this module
through the ``PYTHONPATH`` that ``tests.conftest.tipi_env`` sets and sbatch
passes on; so it imports nothing heavy at module level.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from tipi import PipelineProcess

REPO = Path(__file__).resolve().parents[2]
LOCAL_SLURM = REPO / "scripts" / "local-slurm"
T = TypeVar("T")


@functools.cache
def slurm_unavailable() -> str | None:
    """Why SLURM tests cannot run here, or None when the local cluster is up."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM is not installed (no sinfo/sbatch on PATH); run scripts/local-slurm start (Debian, root)"
    try:
        status = subprocess.run([str(LOCAL_SLURM), "status"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scripts/local-slurm status failed: {exc}"
    if status.returncode != 0:
        lines = ", ".join(line for line in (status.stdout + status.stderr).splitlines()
                          if "stopped" in line or "not accepting" in line)
        return f"the local SLURM cluster is not up ({lines or status.stderr.strip()}); run scripts/local-slurm start"
    return None


@pytest.fixture
def slurm_cluster() -> None:
    """Skip (or, with ``TIPI_REQUIRE_SLURM=1`` as in CI, fail) unless the local cluster is up."""
    reason = slurm_unavailable()
    if reason is None:
        return
    if os.environ.get("TIPI_REQUIRE_SLURM", "") not in ("", "0"):
        pytest.fail(f"TIPI_REQUIRE_SLURM is set but {reason}")
    pytest.skip(reason)


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def read_record(run_dir: Path) -> dict[str, Any]:
    """``run_dir/run.json``, or an empty dict while it does not exist or is being replaced."""
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def train_steps_logged(run_dir: Path) -> int:
    """How many ``train/loss`` lines ``metrics.jsonl`` has (0 while it does not exist)."""
    try:
        return (run_dir / "metrics.jsonl").read_text().count('"train/loss"')
    except OSError:
        return 0


def slurm_job_id(run_dir: Path) -> str | None:
    """The SLURM job id of the run's current attempt (``<array>_<task>`` for an array task).

    Not the raw id: the last task of an array shares its raw id with the whole
    array, so ``scancel --signal`` on it would signal every task.
    """
    attempts = read_record(run_dir).get("attempts") or [{}]
    slurm = attempts[-1].get("slurm") or {}
    if "slurm_array_job_id" in slurm:
        return f"{slurm['slurm_array_job_id']}_{slurm['slurm_array_task_id']}"
    return slurm.get("slurm_job_id")


class Misbehave(PipelineProcess):
    """Fails in a chosen way on chosen seeds, so one sweep has jobs that succeed, raise and die."""

    requires: ClassVar[dict[str, type]] = {}

    def __init__(self, controller: Any, force: bool = False, raise_on_seed: int | None = None,
                 kill_on_seed: int | None = None) -> None:
        super().__init__(controller, force)
        self.raise_on_seed = raise_on_seed
        self.kill_on_seed = kill_on_seed

    def execute(self) -> float:
        """Raise, SIGKILL this process, or return the seed."""
        seed = self.controller.context.cfg.get("seed")
        if seed == self.raise_on_seed:
            raise RuntimeError(f"job with seed {seed} broke on purpose\nsecond line")
        if seed == self.kill_on_seed:
            os.kill(os.getpid(), signal.SIGKILL)
        return float(seed)


MISBEHAVE_EXPERIMENT = """# @package _global_
# No data, no network: only the misbehaving process, so the jobs take seconds
defaults:
  - override /pipeline: misbehave
  - override /scheduler: none
permanences:
  data: null
  network: null
run:
  objective: null
"""

MISBEHAVE_PIPELINE = """# @package processes
misbehave:
  _target_: tests.integration.slurm_helpers.Misbehave
  raise_on_seed: 2
  kill_on_seed: 3
"""


def misbehave_config_dir(root: Path) -> Path:
    """A config dir with ``experiment=misbehave``: seed 1 succeeds, 2 raises, 3 is SIGKILLed."""
    conf = root / "conf"
    (conf / "experiment").mkdir(parents=True, exist_ok=True)
    (conf / "pipeline").mkdir(parents=True, exist_ok=True)
    (conf / "experiment" / "misbehave.yaml").write_text(MISBEHAVE_EXPERIMENT)
    (conf / "pipeline" / "misbehave.yaml").write_text(MISBEHAVE_PIPELINE)
    return conf
