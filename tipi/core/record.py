"""``run.json``: what a person or a requeued job needs to know about a run."""

from __future__ import annotations

import functools
import json
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

SLURM_VARS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git_state() -> dict[str, Any]:
    """Commit and dirty flag of the git tree tipi runs from, if any (never fails)."""
    return dict(_git_state_at(os.environ.get("TIPI_ORIGINAL_CWD", os.getcwd())))


# Once per process and directory: the jobs of a multirun share the code this
# process loaded when it started, so they share its commit; asking git again
# costs two subprocesses per job.
@functools.cache
def _git_state_at(cwd_str: str) -> dict[str, Any]:
    try:
        cwd = Path(cwd_str)
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return {}
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=5,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {}


@functools.cache  # installed versions do not change while a process runs
def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("tipi", "torch", "hydra-core", "omegaconf", "wandb", "submitit"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


class RunRecord:
    """Reads, updates and atomically rewrites ``<run dir>/run.json``.

    A run directory that is run again (resume, SLURM requeue) keeps its record
    and gains one entry in ``attempts``.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "run.json"
        self.data: dict[str, Any] = self.load(self.path) or {"attempts": []}
        self._t0 = time.monotonic()

    @staticmethod
    def load(path: Path) -> dict[str, Any] | None:
        """The record at ``path``, or None if there is none (or it is unreadable)."""
        try:
            return json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def start(self, *, name: str | None, seed: int | None, overrides: list[str] | None = None) -> None:
        """Mark the run as running and record where and with what it runs."""
        slurm = {k.lower(): os.environ[k] for k in SLURM_VARS if k in os.environ}
        attempt = {"start": _now(), "end": None, "status": "running", "host": socket.gethostname()}
        if slurm:
            attempt["slurm"] = slurm
        self.data.setdefault("attempts", []).append(attempt)
        self.data.update(
            status="running",
            name=name,
            seed=seed,
            started=self.data.get("started") or attempt["start"],
            ended=None,
            host=socket.gethostname(),
            pid=os.getpid(),
            argv=sys.argv,
            versions=dict(_versions()),
        )
        if overrides is not None:
            self.data["overrides"] = overrides
        if slurm:
            self.data["slurm"] = slurm
        git = _git_state()
        if git:
            self.data["git"] = git
        self.save()

    def update(self, **fields: Any) -> None:
        """Set top-level fields (e.g. ``wandb_run_id``) and save."""
        self.data.update(fields)
        self.save()

    def finish(self, status: str, *, objective: float | None = None, error: str | None = None,
               reason: str | None = None) -> None:
        """Mark the run (and its current attempt) ended with ``status``."""
        end = _now()
        self.data.update(status=status, ended=end, objective=objective,
                         duration_s=round(time.monotonic() - self._t0, 3))
        self.data["error"] = error
        if self.data.get("attempts"):
            attempt = self.data["attempts"][-1]
            attempt.update(end=end, status=status)
            if reason or error:
                attempt["reason"] = reason or error
        self.save()

    def save(self) -> None:
        """Atomically rewrite ``run.json``."""
        atomic_write_text(self.path, json.dumps(self.data, indent=2, default=str) + "\n")
