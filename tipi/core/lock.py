"""A run directory's owner: while a process runs in a run directory it holds a lock on it.

The lock is ``flock`` on ``<run dir>/.tipi.lock`` (standard library, about
30 microseconds to take and release). It lives as long as the process runs
there: the process releases it when the run ends, and the kernel releases it
when the process dies (SIGKILL, the OOM killer, a node's SLURM requeue), so a
run that was killed resumes at once, and nothing is left to clean up by hand.
A process that finds it held is told who holds it, from the run.json the
holder writes as it starts (pid, host, the attempt's start, its SLURM job):
run.json is written atomically and fsynced, so another node of a shared file
system reads it whole. The lock file itself stays empty: it takes no space,
and the run directory's footprint is what it was.

Why ``flock`` and not ``fcntl``/``lockf`` (POSIX record locks): a POSIX lock
belongs to the process, not to the open file, so any ``close()`` of any
descriptor of the file in that process (a probe that opens it to read the
owner) silently drops it, and a second lock from the same process succeeds.
An ``flock`` belongs to the open file: a probe through another descriptor,
even in the same process, sees it held, and closing that descriptor leaves
it in place. The file is never deleted: deleting a lock file lets a second
process lock a fresh file of the same name while the first still holds the
old one.

On NFS, Linux emulates ``flock`` with a whole-file POSIX lock on the server
(NLM for NFSv3, the protocol's own locks for NFSv4), so processes on other
nodes see it too; see ``docs/troubleshooting.md`` for what a node that dies
while holding it, or a ``nolock`` mount, means.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LOCK_NAME = ".tipi.lock"
# A probe holds the lock shared for microseconds: a conflict shorter than this is none.
_BRIEF_S = 0.05
# A holder between taking the lock and writing run.json (milliseconds): wait this long for its name.
_SETTLE_S = 0.5
# The owner run.json names has ended on this host, yet the lock is held: by the next owner, which has not
# written run.json yet, by a process the last one left behind, or by one in another container with this
# host name. Wait this long for run.json to name a live owner.
_GONE_GRACE_S = 2.0
_POLL_S = 0.02
# flock is not available on this file system (a Lustre mount without -o flock, NFS without lockd):
_NO_LOCKS = {errno.ENOLCK, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF}


@dataclass(frozen=True)
class Owner:
    """Who holds a run directory: the process, its host, since when, and its SLURM job if any."""

    pid: int | None = None
    host: str | None = None
    since: str | None = None
    slurm_job_id: str | None = None

    def here(self) -> bool:
        """Whether the owner runs on this host."""
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        """Whether the owner may still run (a process on another host counts as alive)."""
        if not self.here() or self.pid is None:
            return True
        return pid_alive(self.pid)

    def describe(self) -> str:
        """``pid 4242 on host gpu07 since 2026-12-02T09:44:19+00:00 (SLURM job 1234)``."""
        text = f"pid {self.pid if self.pid is not None else '?'} on host {self.host or '?'} since {self.since or '?'}"
        return text + (f" (SLURM job {self.slurm_job_id})" if self.slurm_job_id else "")


class LockHeld(Exception):
    """Another process holds the run directory's lock; ``owner`` is who (None: not recorded)."""

    def __init__(self, path: Path, owner: Owner | None) -> None:
        super().__init__(f"{path} is held by {owner.describe() if owner else 'another process'}")
        self.path = path
        self.owner = owner


class RunDirLock:
    """A held run-directory lock; ``release()`` it when the run ends (the kernel does if the process dies).

    ``locked`` is False when the file system offers no locks (``error`` says
    why): the run goes on unguarded, as it did before locks existed.
    """

    def __init__(self, path: Path, fd: int | None, error: str | None = None) -> None:
        self.path = path
        self.fd = fd
        self.error = error
        self.depth = 1

    @property
    def locked(self) -> bool:
        """Whether this process holds the lock."""
        return self.fd is not None

    def release(self) -> None:
        """Unlock and close; the outermost of nested ``acquire`` s alone releases."""
        self.depth -= 1
        if self.depth > 0:
            return
        _held.pop(str(self.path), None)
        fd, self.fd = self.fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# This process's locks, by path: a second descriptor of ours would see our own flock as another's.
_held: dict[str, RunDirLock] = {}


def _forget_in_child() -> None:
    """In a forked child (a DataLoader worker), drop our descriptors of the lock files.

    The lock stays with the parent (a shared open file is unlocked only when
    all its descriptors close), but a child that outlives a killed parent no
    longer keeps the run directory locked.
    """
    for lock in list(_held.values()):
        if lock.fd is not None:
            with contextlib.suppress(OSError):
                os.close(lock.fd)
            lock.fd = None
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def lock_path(run_dir: Path) -> Path:
    """``<run dir>/.tipi.lock``, absolute."""
    return Path(run_dir).absolute() / LOCK_NAME


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, someone else's
        return True
    except OSError:
        return True
    return True


def _slurm_job(slurm: Any) -> str | None:
    if not isinstance(slurm, dict):
        return None
    if slurm.get("slurm_array_job_id") and slurm.get("slurm_array_task_id"):
        return f"{slurm['slurm_array_job_id']}_{slurm['slurm_array_task_id']}"
    job = slurm.get("slurm_job_id")
    return str(job) if job else None


def recorded_owner(run_dir: Path) -> Owner | None:
    """The process run.json says is running in ``run_dir``, or None when it says none is."""
    try:
        record = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("status") != "running":
        return None
    attempts = record.get("attempts")
    last = attempts[-1] if isinstance(attempts, list) and attempts and isinstance(attempts[-1], dict) else {}
    pid = record.get("pid")
    return Owner(
        pid=pid if isinstance(pid, int) else None,
        host=str(record["host"]) if record.get("host") else None,
        since=str(last.get("start") or record.get("started") or "") or None,
        slurm_job_id=_slurm_job(last.get("slurm") or record.get("slurm")),
    )


def _settled(owner: Owner | None, waited: float) -> bool:
    """Whether to stop waiting for a held lock: its owner is named and running, or waiting is over.

    Never before ``_BRIEF_S``: a probe (:func:`holder`) holds it for microseconds.
    """
    if waited < _BRIEF_S:
        return False
    if owner is None:  # the holder has not written run.json yet: it does within milliseconds
        return waited >= _SETTLE_S
    if owner.here() and owner.pid is not None and not pid_alive(owner.pid):
        return waited >= _GONE_GRACE_S
    return True


def acquire(run_dir: Path) -> RunDirLock:
    """Take ``run_dir``'s lock for this process, or raise :class:`LockHeld` naming who holds it.

    Never blocks for long: a held lock whose owner run.json names as running
    is refused after 50 ms (a probe's shared hold is briefer); one whose
    holder has not written run.json yet, after half a second; one whose named
    owner has ended here, after two. Nested calls in one process
    share one lock. A file system without locks gives an unlocked
    :class:`RunDirLock` and one warning.
    """
    path = lock_path(run_dir)
    held = _held.get(str(path))
    if held is not None:
        held.depth += 1
        return held
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    start = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            owner = recorded_owner(path.parent)
            if _settled(owner, time.monotonic() - start):
                os.close(fd)
                raise LockHeld(path, owner) from None
            time.sleep(_POLL_S)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in _NO_LOCKS:
                raise
            reason = exc.strerror or str(exc)
            log.warning("cannot lock %s (%s): another process could run in this directory meanwhile", path, reason)
            return RunDirLock(path, None, error=reason)
    lock = RunDirLock(path, fd)
    _held[str(path)] = lock
    return lock


def holder(run_dir: Path) -> Owner | None:
    """Who else holds ``run_dir``'s lock now: an :class:`Owner` (fields None when not recorded), or None.

    None when it is free, when this process holds it, when there is no lock
    file, and when the file system has no locks. Reads only: the lock file is
    opened read-only and never created.
    """
    path = lock_path(run_dir)
    if str(path) in _held:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file (a fresh directory, or a run from before locks), or unreadable
        return None
    start = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = recorded_owner(path.parent)
                if _settled(owner, time.monotonic() - start):
                    return owner or Owner()
                time.sleep(_POLL_S)
                continue
            except OSError:
                return None
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
    finally:
        os.close(fd)
