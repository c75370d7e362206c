"""``run.json``: what a person or a requeued job needs to know about a run."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import Any

from tipi.atomic import atomic_write_text
from tipi.core.provenance import keep_diff
from tipi.core.slot import current_slot

__all__ = ["RunRecord", "RunStatus", "atomic_write_text"]


class RunStatus(StrEnum):
    """A run's (or a sweep job's) status, as run.json, summaries and the runs browser write it.

    A ``StrEnum``: members compare equal to, and serialize as, their plain strings.
    """

    PENDING = "pending"  # submitted, not started (a queued SLURM job)
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM: checkpointed, may be resumed
    PRUNED = "pruned"  # a search's trial its pruner stopped at an epoch boundary: checkpointed, metrics kept
    REQUEUED = "requeued"  # SLURM requeue or preemption: the same job comes back
    CANCELLED = "cancelled"  # scancel before or while it ran
    LOST = "lost"  # the scheduler forgot it and no run.json says how it ended
    CORRUPT = "corrupt"  # a directory whose run.json is missing or unreadable


# set by `tipi-runs reproduce` for the run it starts: the run directory that run repeats
REPRODUCES_ENV = "TIPI_REPRODUCES"
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def launch_dir() -> str:
    """The directory tipi was started from (a submitit job runs elsewhere and says where it started)."""
    return os.environ.get("TIPI_ORIGINAL_CWD", os.getcwd())


def _git_state() -> dict[str, Any]:
    """Commit, repository root and dirty flag of the git tree tipi runs from, if any (never fails)."""
    return dict(_git_state_at(launch_dir()))


def git_state_at(cwd: str) -> dict[str, Any]:
    """``{"commit", "dirty", "root"}`` of the git tree at ``cwd``; empty outside one (never fails)."""
    return dict(_git_state_at(cwd))


def installed_versions() -> dict[str, str]:
    """Versions of python, tipi, torch and the other packages run.json records, as installed here."""
    return dict(_versions())


# Once per process and directory: the jobs of a multirun share the code this
# process loaded when it started, so they share its commit; asking git again
# costs two subprocesses per job.
@functools.cache
def _git_state_at(cwd_str: str) -> dict[str, Any]:
    try:
        cwd = Path(cwd_str)
        commit = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0 or len(commit.stdout.split("\n")) < 2:
            return {}
        root, head = commit.stdout.split("\n")[:2]
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return {"commit": head.strip(), "dirty": bool(dirty.stdout.strip()), "root": root.strip()}
    except (OSError, subprocess.SubprocessError):
        return {}


@functools.cache  # installed versions do not change while a process runs
def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("tipi", "torch", "hydra-core", "omegaconf", "wandb", "submitit"):
        with contextlib.suppress(metadata.PackageNotFoundError):  # not installed: not recorded
            versions[dist] = metadata.version(dist)
    return versions


class RunRecord:
    """Reads, updates and atomically rewrites ``<run dir>/run.json``.

    A run directory that is run again (resume, SLURM requeue) keeps its record
    and gains one entry in ``attempts``. A run.json that exists but cannot be
    read (``unreadable``: cut short by a copy, damaged by hand) is never
    overwritten unseen: the first :meth:`save` renames it aside
    (:meth:`set_aside`), and the runner rebuilds what it can
    (:mod:`tipi.core.recover`).
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "run.json"
        loaded = self.load(self.path)
        self.unreadable = False
        self.aside: Path | None = None  # where an unreadable run.json was kept
        self._unreadable_id: tuple[int, int, int] | None = None
        if loaded is None:
            try:
                st = self.path.stat()
            except OSError:
                pass
            else:
                self.unreadable = True
                self._unreadable_id = (st.st_ino, st.st_size, st.st_mtime_ns)
        self.data: dict[str, Any] = loaded or {"attempts": []}
        self._t0 = time.monotonic()

    @staticmethod
    def load(path: Path) -> dict[str, Any] | None:
        """The record at ``path``, or None if there is none (or it is unreadable, or not a JSON object)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def set_aside(self) -> Path | None:
        """Rename an unreadable run.json to ``run.json.unreadable-<UTC time>`` (never deleted); the new name.

        Only the very file found unreadable is renamed: one another process
        has written since is left for :meth:`save` to replace as usual.
        """
        if not self.unreadable or self.aside is not None:
            return self.aside
        self.unreadable = False
        try:
            st = self.path.stat()
        except OSError:
            return None
        if (st.st_ino, st.st_size, st.st_mtime_ns) != self._unreadable_id:
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.path.name}.unreadable-{stamp}")
        n = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.unreadable-{stamp}-{n}")
            n += 1
        os.replace(self.path, aside)
        self.aside = aside
        return aside

    def start(
        self,
        *,
        name: str | None,
        seed: int | None,
        overrides: list[str] | None = None,
        attempt_overrides: list[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Mark the run as running and record where and with what it runs.

        ``overrides`` are the run's own (its first command line);
        ``attempt_overrides`` those a resumed attempt added on top; ``extra``
        more top-level fields (``deterministic``, the data's fingerprint). A
        launch directory with uncommitted changes keeps them in ``git.diff``
        (:func:`tipi.core.provenance.keep_diff`); a run started by
        ``tipi-runs reproduce`` records the run it repeats (``reproduces``).
        """
        slurm = {k.lower(): os.environ[k] for k in SLURM_VARS if k in os.environ}
        attempt: dict[str, Any] = {
            "start": _now(),
            "end": None,
            "status": RunStatus.RUNNING,
            "host": socket.gethostname(),
        }
        if slurm:
            attempt["slurm"] = slurm
        slot = current_slot()  # launcher=pool: the GPU or the share of the cores this attempt ran on
        if slot:
            attempt["slot"] = slot
        if attempt_overrides:
            attempt["overrides"] = attempt_overrides
        self.data.setdefault("attempts", []).append(attempt)
        self.data.update(
            status=RunStatus.RUNNING,
            name=name,
            seed=seed,
            started=self.data.get("started") or attempt["start"],
            ended=None,
            host=socket.gethostname(),
            pid=os.getpid(),
            argv=sys.argv,
            versions=dict(_versions()),
            cwd=launch_dir(),
            **(extra or {}),
        )
        if os.environ.get(REPRODUCES_ENV):
            self.data["reproduces"] = os.environ[REPRODUCES_ENV]
        if overrides is not None:
            self.data["overrides"] = overrides
        if slurm:
            self.data["slurm"] = slurm
        if slot:
            self.data["slot"] = slot
        git = _git_state()
        if git.get("dirty") and self.owns_files():
            git.update(keep_diff(self.path.parent, launch_dir()))
        if git:
            self.data["git"] = git
        self.save()

    def owns_files(self) -> bool:
        """Whether this process writes the run's own files beside run.json (one rank of several does)."""
        return True

    def update(self, **fields: Any) -> None:
        """Set top-level fields (e.g. ``wandb_run_id``) and save."""
        self.data.update(fields)
        self.save()

    def finish(
        self, status: str, *, objective: float | None = None, error: str | None = None, reason: str | None = None
    ) -> None:
        """Mark the run (and its current attempt) ended with ``status``."""
        end = _now()
        self.data.update(
            status=status, ended=end, objective=objective, duration_s=round(time.monotonic() - self._t0, 3)
        )
        self.data["error"] = error
        if self.data.get("attempts"):
            attempt = self.data["attempts"][-1]
            attempt.update(end=end, status=status)
            if reason or error:
                attempt["reason"] = reason or error
        self.save()

    def finish_as_before(self, before: dict[str, Any], status: str, reason: str) -> None:
        """End an attempt that changed nothing: the record is ``before`` again, plus this attempt's entry.

        A resumed run whose steps were all done keeps its status, objective,
        metrics, timings and provenance (git commit, versions): they are still
        those of the attempt that produced its results.
        """
        attempt = dict((self.data.get("attempts") or [{}])[-1])
        attempt.update(end=_now(), status=status, reason=reason)
        self.data = {**before, "attempts": [*(before.get("attempts") or []), attempt]}
        self.save()

    def save(self) -> None:
        """Atomically rewrite ``run.json`` (an unreadable one is first set aside, never overwritten)."""
        if self.unreadable:
            self.set_aside()
        atomic_write_text(self.path, json.dumps(self.data, indent=2, default=str) + "\n")
