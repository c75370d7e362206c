"""Shared fixtures: run the real CLI in a subprocess, in a temp working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

# The suite runs on every core at once (pytest -n 2): one torch thread per process (the pytest workers
# and every tipi they start), so the workers share the cores instead of each spinning OpenMP threads on
# all of them. A test that needs more sets its own.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def tipi_env(**extra: str) -> dict[str, str]:
    """The environment a CLI test runs with: offline WandB, no colours, tests importable."""
    env = dict(os.environ)
    env.update(
        WANDB_MODE=env.get("WANDB_MODE", "offline"),
        WANDB_SILENT="true",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        NO_COLOR="1",
        TERM="dumb",
        COLUMNS="200",
    )
    env.pop("TIPI_TRACEBACK", None)
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(extra)
    return env


RunTipi = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_tipi(tmp_path: Path) -> RunTipi:
    """``run_tipi("+experiment=seg", "debug=fast")`` runs ``python -m tipi`` in ``tmp_path``."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 240, env: dict[str, str] | None = None,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "tipi", *args], cwd=cwd or tmp_path, env=env or tipi_env(),
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"tipi {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


def run_dirs(root: Path) -> list[Path]:
    """Every directory under ``root`` that holds a ``run.json``, oldest first."""
    return sorted((p.parent for p in root.rglob("run.json")), key=lambda p: str(p))


def read_json(path: Path) -> Any:
    """Parse a JSON file."""
    return json.loads(path.read_text())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Parse a JSON-lines file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- tiers: the folder decides the marks --------------------------------------------------------------
# unit/ starts no process (the fast tier, `-m "not slow"`); integration/ and reliability/ run the CLI
# in subprocesses, launchers and the SLURM cluster (`slow`).
_SLOW_FOLDERS = {"integration", "reliability"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under a slow folder ``slow``; nothing else decides the tier."""
    for item in items:
        if _SLOW_FOLDERS & set(Path(str(item.fspath)).relative_to(REPO / "tests").parts[:1]):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _hydra_restored() -> Any:
    """Hydra as it was before the test: the seam's patches removed, Hydra's singletons restored.

    As Hydra's own ``hydra_restore_singletons``; a test that installs the seam (or
    composes a WandB sweep run, which installs the params hook) leaks nothing.
    """
    if "hydra" not in sys.modules:
        yield
        return
    from hydra.core.singleton import Singleton

    state = Singleton.get_state()
    yield
    Singleton.set_state(state)
    if "tipi._hydra.patches" in sys.modules:
        sys.modules["tipi._hydra.patches"].uninstall()
