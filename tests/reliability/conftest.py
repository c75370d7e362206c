"""Fixtures of the reliability suite: timed CLI runs, runs to interrupt, and finished runs to damage."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunTipi, read_jsonl, tipi_env

# A run long enough to interrupt mid-epoch (8 steps an epoch, a checkpoint and
# a metrics line every step) and short enough to finish in a few seconds.
INTERRUPTIBLE = (
    "debug=fast", "model=unet_small", "progress=none", "data.limit_train=128", "processes.train.epochs=2",
    "processes.train.checkpoint_every_n_steps=1", "processes.train.log_every_n_steps=1",
    "processes.train.figures_every_n_epochs=0", "~processes.result",
)
STEPS_PER_EPOCH = 8


def reliability_env() -> dict[str, str]:
    """``tipi_env`` with one torch thread per run.

    These runs are tiny and CI machines small and shared: OpenMP threads
    spinning against other processes cost several times the CPU time.
    """
    return tipi_env(OMP_NUM_THREADS="1")


@pytest.fixture
def run_tipi(run_tipi: RunTipi) -> RunTipi:
    """The shared ``run_tipi``, with ``reliability_env`` unless a test passes its own ``env``."""

    def run(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run_tipi(*args, env=env or reliability_env(), **kwargs)

    return run


@dataclass
class CliResult:
    """A finished ``python -m tipi``: exit code, what it printed, what it imported, how long it took."""

    returncode: int
    stdout: str
    stderr: str  # without the -X importtime lines
    imported: set[str]
    seconds: float

    @property
    def output(self) -> str:
        """stdout and stderr together."""
        return self.stdout + self.stderr


Cli = Callable[..., CliResult]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """``cli("device=tpu")``: run ``python -X importtime -m tipi`` in ``tmp_path``, timed."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> CliResult:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tipi", *args], cwd=cwd or tmp_path,
                              env=reliability_env(), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        lines = proc.stderr.splitlines()
        imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}
        stderr = "\n".join(line for line in lines if not line.startswith("import time:"))
        return CliResult(proc.returncode, proc.stdout, stderr, imported, seconds)

    return run


def tipi_command(*args: str, fault: tuple[str, int] | None = None) -> list[str]:
    """``python -m tipi ARGS``, or the same run with a fault from ``tests.reliability.faults`` installed."""
    if fault is None:
        return [sys.executable, "-m", "tipi", *args]
    return [sys.executable, "-m", "tests.reliability.faults", fault[0], str(fault[1]), "--", *args]


def start_tipi(*args: str, cwd: Path, fault: tuple[str, int] | None = None) -> subprocess.Popen[str]:
    """Start ``tipi_command(*args, fault=fault)`` in the background."""
    return subprocess.Popen(tipi_command(*args, fault=fault), cwd=cwd, env=reliability_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(proc: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 120) -> None:
    """Poll ``ready`` every 10 ms until it holds; fail if ``proc`` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"tipi ended (exit {proc.returncode}) before the test could interrupt it\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the run to get going")
        time.sleep(0.01)


def train_lines(run_dir: Path) -> int:
    """How many training-loss lines ``metrics.jsonl`` holds so far (0 while it does not exist)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    # The last line may be half-written while we read: count complete lines only.
    complete = path.read_text().rsplit("\n", 1)[0]
    return sum('"train/loss"' in line for line in complete.splitlines())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint the way tipi does (weights only)."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def same_weights(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two state dicts hold exactly the same tensors."""
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def snapshot(run_dir: Path) -> dict[str, str]:
    """Every file of a run directory and a hash of its bytes, leaving out what Hydra writes each attempt.

    Hydra appends to ``tipi.log`` and saves each attempt's config under
    ``.hydra/``; tipi's own files (run.json, metrics, checkpoints) must not change.
    """
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != "tipi.log" and ".hydra" not in p.parts}


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``debug=fast`` run directory; copy it (``copy_run``) before changing anything."""
    root = tmp_path_factory.mktemp("finished")
    subprocess.run([sys.executable, "-m", "tipi", "debug=fast", "model=unet_small", "progress=none",
                    "hydra.run.dir=run"],
                   cwd=root, env=reliability_env(), capture_output=True, text=True, timeout=240, check=True,
                   stdin=subprocess.DEVNULL)
    return root / "run"


@pytest.fixture
def copy_run(finished_run: Path, tmp_path: Path) -> Callable[[str], Path]:
    """``copy_run("name")``: a private copy of ``finished_run`` under ``tmp_path``."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(finished_run, tmp_path / name))

    return copy


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``INTERRUPTIBLE`` run, never interrupted: the reference for resumed runs."""
    root = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run([sys.executable, "-m", "tipi", *INTERRUPTIBLE, "hydra.run.dir=run"], cwd=root,
                   env=reliability_env(), capture_output=True, text=True, timeout=240, check=True,
                   stdin=subprocess.DEVNULL)
    return root / "run"


def records(run_dir: Path) -> list[dict[str, Any]]:
    """``metrics.jsonl`` as dicts."""
    return read_jsonl(run_dir / "metrics.jsonl")
