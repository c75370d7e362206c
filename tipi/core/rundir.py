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
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from tipi.core.errors import ConfigError
from tipi.core.record import RunStatus

# One claim per name and process: Hydra resolves hydra.run.dir more than once.
_claimed: dict[str, str] = {}
_SLURM_IDS = (("slurm_array_job_id", "slurm_array_task_id"), ("slurm_job_id",))


class RunDirTaken(ConfigError):
    """A fresh run was pointed at a directory that holds another run."""


def claim_fresh_dir(default: str) -> str:
    """Create and own ``default``, or the first free ``default_N``; the name taken.

    Idempotent within a process. A directory that cannot be created is left
    to the caller (the output-directory check reports it with its key).
    """
    if default in _claimed:
        return _claimed[default]
    base = Path(default)
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
        return str(candidate)


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
    """Whether the process run.json names may still be running (unknown hosts count as alive)."""
    if record.get("status") not in (RunStatus.RUNNING, None):
        return False
    if record.get("host") != socket.gethostname():
        return True
    pid = record.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def same_run(record: dict[str, Any], overrides: list[str] | None) -> bool:
    """Whether a run with ``overrides`` starting here is the run that ``record`` describes, coming back.

    True for the same SLURM job (requeue, preemption) and for the same
    command run again once its process is gone (a killed run restarted by
    hand or by a scheduler that does not set SLURM ids).
    """
    if _same_slurm_job(record):
        return True
    return overrides is not None and record.get("overrides") == overrides and not _process_alive(record)


def describe(record: dict[str, Any]) -> str:
    """One line about the run ``record`` describes: started, status, overrides."""
    overrides = " ".join(record.get("overrides") or []) or "(none)"
    return f"started {record.get('started', '?')}, status {record.get('status', '?')}, overrides: {overrides}"


def check_free(run_dir: Path, overrides: list[str] | None, key: str = "hydra.run.dir") -> None:
    """Refuse a fresh run in a directory another run holds; the same run coming back may continue."""
    record = read_record(run_dir)
    if record is None or same_run(record, overrides):
        return
    raise RunDirTaken(
        f"'{run_dir}' holds another run ({describe(record)})",
        key=key,
        hint=f"Continue that run with resume={run_dir}, or start this one in another directory "
        f"(leave {key} unset and tipi picks a fresh one).",
    )
