"""A run directory belongs to one run.

Two rules keep it so:

1. A fresh run *claims* its directory: :func:`claim_fresh_dir` creates it with
   one ``mkdir`` (atomic: of two processes asking for the same name, exactly
   one gets it) and, when the default name is taken, takes the next free one,
   ``<name>_1``, ``<name>_2``, ... Hydra's default names have one-second
   resolution, so runs started together (a shell loop with ``&``, a SLURM job
   array) would otherwise share one.
2. A run may write into a directory that holds another run's ``run.json`` only
   when it *is* that run coming back (:func:`same_run`): ``resume=<dir>``, a
   SLURM requeue or preemption of the same job (its ids are in run.json), or
   the same command run again after its process died. Anything else is
   refused (:func:`check_free`) before a byte is written.

And one process at a time runs in a run directory: it holds the directory's
lock (:mod:`tipi.core.lock`, :func:`own`) while it runs there; another
process, fresh, resumed or the same command again, is refused with who runs
there and since when (:func:`check_not_running`).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from tipi.core.errors import ConfigError
from tipi.core.lock import LockHeld, Owner, RunDirLock, acquire, holder, lock_path, pid_alive
from tipi.core.record import RunStatus

# One claim per name and process: Hydra resolves hydra.run.dir more than once.
_claimed: dict[str, str] = {}
_made: dict[str, list[Path]] = {}  # a claimed directory -> it and the parents its claim created
_SLURM_IDS = (("slurm_array_job_id", "slurm_array_task_id"), ("slurm_job_id",))


class RunDirTaken(ConfigError):
    """A fresh run was pointed at a directory that holds another run."""


class RunDirBusy(RunDirTaken):
    """A process is running in the run directory now: nothing else may write there until it ends.

    A :class:`RunDirTaken`: whatever refuses a taken directory before Hydra
    writes into it (the output-directory callback) refuses a busy one too.
    """


def claim_fresh_dir(default: str) -> str:
    """Create and own ``default``, or the first free ``default_N``; the name taken.

    Idempotent within a process. A directory that cannot be created is left
    to the caller (the output-directory check reports it with its key).
    """
    if default in _claimed:
        return _claimed[default]
    base = Path(default)
    new_parents = [p for p in reversed(base.absolute().parents) if not p.exists()]
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return default
    suffix = 0
    while True:
        candidate = base if suffix == 0 else base.with_name(f"{base.name}_{suffix}")
        try:
            candidate.mkdir()
        except FileExistsError:
            suffix += 1
            continue
        except OSError:
            return default
        _claimed[default] = str(candidate)
        _made[str(candidate.absolute())] = [candidate.absolute(), *reversed(new_parents)]
        return str(candidate)


def made_by_this_process(path: Path) -> list[Path]:
    """The directories this process created to claim ``path``: it first, then the parents it made (innermost
    first); [] when ``path`` was not claimed here (a directory the user named, or another process's)."""
    return list(_made.get(str(Path(path).absolute()), []))


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The run.json in ``run_dir`` (a dict), None when there is none or it is unreadable."""
    try:
        data = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _current_slurm() -> dict[str, str]:
    return {
        k.lower(): v
        for k, v in os.environ.items()
        if k.startswith("SLURM_") and k.lower() in {name for ids in _SLURM_IDS for name in ids}
    }


def _same_slurm_job(record: dict[str, Any]) -> bool:
    recorded = record.get("slurm") or {}
    current = _current_slurm()
    for ids in _SLURM_IDS:
        if all(recorded.get(k) for k in ids) and all(recorded.get(k) == current.get(k) for k in ids):
            return True
    return False


def _process_alive(record: dict[str, Any]) -> bool:
    """Whether the process run.json names may still be running (unknown hosts count as alive).

    For a directory without a lock file only (a run from before run-directory
    locks): where there is one, the lock alone says whether a process runs there.
    """
    if record.get("status") not in (RunStatus.RUNNING, None):
        return False
    if record.get("host") != socket.gethostname():
        return True
    pid = record.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    return pid_alive(pid)


def same_run(record: dict[str, Any], overrides: list[str] | None, run_dir: Path | None = None) -> bool:
    """Whether a run with ``overrides`` starting here is the run that ``record`` describes, coming back.

    True for the same SLURM job (requeue, preemption) and for the same
    command run again once its process is gone (a killed run restarted by
    hand or by a scheduler that does not set SLURM ids). With ``run_dir``
    given, its lock says whether that process is gone.
    """
    if _same_slurm_job(record):
        return True
    if overrides is None or record.get("overrides") != overrides:
        return False
    if run_dir is not None and lock_path(run_dir).exists():
        return holder(run_dir) is None
    return not _process_alive(record)


def describe(record: dict[str, Any]) -> str:
    """One line about the run ``record`` describes: started, status, overrides."""
    overrides = " ".join(record.get("overrides") or []) or "(none)"
    return f"started {record.get('started', '?')}, status {record.get('status', '?')}, overrides: {overrides}"


def _stored_overrides(run_dir: Path) -> list[str] | None:
    """The command-line overrides in ``.hydra/overrides.yaml``, None when there are none to read."""
    try:
        import yaml

        data = yaml.safe_load((Path(run_dir) / ".hydra" / "overrides.yaml").read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - OSError, yaml's own errors: an unreadable file is no evidence
        return None
    return [str(o) for o in data] if isinstance(data, list) else None


def check_free(run_dir: Path, overrides: list[str] | None, key: str = "hydra.run.dir") -> None:
    """Refuse a fresh run in a directory another run holds; the same run coming back may continue.

    A directory a process runs in now is refused first (:func:`check_not_running`),
    and then nothing there advises ``resume=``. A directory whose run.json is
    unreadable is known by its ``.hydra/overrides.yaml``: the same command
    continues it (the runner keeps the unreadable file and rebuilds the
    record), another is refused.
    """
    check_not_running(run_dir, key=key)
    record = read_record(run_dir)
    if record is None:
        if not (Path(run_dir) / "run.json").exists():
            return
        stored = _stored_overrides(run_dir)
        if stored is None or stored == overrides:
            return
        record = {"overrides": stored, "started": "?", "status": "unknown (run.json is unreadable)"}
    elif same_run(record, overrides, run_dir):
        return
    raise RunDirTaken(
        f"'{run_dir}' holds another run ({describe(record)})",
        key=key,
        hint=f"Continue that run with resume={run_dir}, or start this one in another directory "
        f"(leave {key} unset and tipi picks a fresh one).",
    )


def _busy(run_dir: Path, owner: Owner | None, key: str) -> RunDirBusy:
    """The refusal for a directory that ``owner`` runs in now: who, where, since when, and how to stop it."""
    after = (
        f"then resume={run_dir} continues it"
        if key == "resume"
        else "or start this run in another directory (leave hydra.run.dir unset)"
    )
    if owner is None or owner.pid is None:  # it has not written its run.json yet (or it is unreadable)
        return RunDirBusy(
            f"'{run_dir}' is running in another process, which has not recorded itself in run.json yet; "
            "wait, or stop it first",
            key=key,
            hint=f"Stopping it with SIGTERM (kill, scancel) checkpoints it after the current step; {after}.",
        )
    if owner.slurm_job_id:
        stop = f"`scancel {owner.slurm_job_id}`"
    else:
        stop = f"`kill {owner.pid}`" + (f" on {owner.host}" if owner.host and not owner.here() else "")
    gone = (
        ""
        if owner.alive()
        else f" (pid {owner.pid} has ended, yet the lock is held: by a process it started, or one not recorded yet)"
    )
    return RunDirBusy(
        f"'{run_dir}' is running in {owner.describe()}{gone}; wait, or stop it first",
        key=key,
        hint=f"{stop} stops it after the current step, with a checkpoint; {after}.",
    )


def check_not_running(run_dir: Path, key: str = "hydra.run.dir") -> None:
    """Refuse when another process runs in ``run_dir`` now (holds its lock). Reads only; about 10 µs."""
    owner = holder(Path(run_dir))
    if owner is not None:
        raise _busy(Path(run_dir), owner, key)


def own(run_dir: Path, key: str = "run_dir") -> RunDirLock:
    """Take ``run_dir`` for this process until ``release()`` (or its death); refused while another runs there."""
    try:
        return acquire(Path(run_dir))
    except LockHeld as exc:
        raise _busy(Path(run_dir), exc.owner, key) from None
