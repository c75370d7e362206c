"""What the scheduler says about a sweep's jobs: one ``sacct`` call for all of them, or process checks.

``sacct`` rather than ``squeue``: it also knows jobs that ended (cancelled,
failed, completed) long after they left the queue, as long as the cluster's
accounting keeps them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable

from tipi.core.record import RunStatus

UNDERWAY = {
    "PENDING": RunStatus.PENDING,
    "REQUEUED": RunStatus.PENDING,
    "REQUEUE_HOLD": RunStatus.PENDING,
    "REQUEUE_FED": RunStatus.PENDING,
    "CONFIGURING": RunStatus.PENDING,
    "RESV_DEL_HOLD": RunStatus.PENDING,
    "RUNNING": RunStatus.RUNNING,
    "COMPLETING": RunStatus.RUNNING,
    "SUSPENDED": RunStatus.RUNNING,
    "STAGE_OUT": RunStatus.RUNNING,
    "SIGNALING": RunStatus.RUNNING,
    "RESIZING": RunStatus.RUNNING,
    "STOPPED": RunStatus.RUNNING,
}
FAILED = {"FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "TIMEOUT", "BOOT_FAIL", "DEADLINE", "PREEMPTED", "REVOKED"}
_ARRAY = re.compile(r"^(\d+)_\[([^\]]+)\]$")


def expand_job_id(job_id: str) -> list[str]:
    """``sacct``'s JobID as the ids it stands for: ``11_[0-2,5%4]`` -> ``11_0 11_1 11_2 11_5``."""
    match = _ARRAY.match(job_id)
    if match is None:
        return [job_id]
    base, spec = match.group(1), match.group(2).split("%")[0]
    ids = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (hi.isdigit() or not hi):
            ids += [f"{base}_{task}" for task in range(int(lo), int(hi or lo) + 1)]
    return ids


def sacct_states(job_ids: Iterable[str], timeout: float = 60.0) -> dict[str, str] | None:
    """``{job id: SLURM state}`` for the given ids, from one ``sacct`` call; None if sacct cannot answer.

    Array tasks are asked for by their array's id (``sacct -j 11_2`` does not
    find a task that is still pending inside ``11_[0-3]``), so the answer can
    hold more ids than were asked for.
    """
    bases = sorted({str(job_id).split("_")[0] for job_id in job_ids if job_id})
    if not bases or shutil.which("sacct") is None:
        return None
    try:
        proc = subprocess.run(
            [
                "sacct",
                "--noheader",
                "--parsable2",
                "--allocations",
                "--format=JobID,State",
                f"--jobs={','.join(bases)}",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    states: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        job_id, _, state = line.partition("|")
        words = state.split()
        for one in expand_job_id(job_id.strip()):
            states[one] = words[0].rstrip("+") if words else "UNKNOWN"  # "CANCELLED by 0" -> CANCELLED
    return states


def process_states(pids: Iterable[str]) -> dict[str, str]:
    """submitit's local executor: a job id is a process id of this machine; RUNNING while it lives."""
    states = {}
    for pid in pids:
        if not str(pid).isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            continue
        except OSError:
            pass
        states[str(pid)] = "RUNNING"
    return states


def resolve(
    record_status: str | None, state: str | None, *, slurm: bool, just_submitted: bool = False
) -> tuple[str, str]:
    """``(status, why)``: a job's status from its ``run.json`` and what the scheduler says.

    ``run.json`` wins once the run ended by itself (succeeded, failed); while it
    says running or was interrupted, the scheduler tells whether the job is
    queued again, running, cancelled, failed outside tipi, or gone (lost).
    ``record_status`` None: no readable ``run.json``. ``just_submitted``: the
    manifest says the job was submitted minutes ago, so a scheduler that does
    not know it yet (accounting lags behind ``sbatch``) means pending, not lost.
    """
    if record_status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
        return record_status, ""
    if state in UNDERWAY:
        status = UNDERWAY[state]
        if status == RunStatus.PENDING and record_status in (RunStatus.REQUEUED, RunStatus.INTERRUPTED):
            return RunStatus.REQUEUED, ""
        return status, ""
    if state == "CANCELLED":
        return RunStatus.CANCELLED, "cancelled (scancel)" if slurm else "cancelled"
    if state in FAILED:
        return RunStatus.FAILED, f"SLURM state {state}"
    if state is None and just_submitted and record_status in (None, RunStatus.PENDING):
        return RunStatus.PENDING, ""
    if record_status is None:
        if state == "COMPLETED":
            return RunStatus.LOST, "the job ended and left no run.json"
        return RunStatus.CORRUPT, "no run.json and the scheduler does not know the job"
    if record_status == RunStatus.INTERRUPTED and state is None and not slurm:
        return RunStatus.INTERRUPTED, ""
    if record_status == RunStatus.PENDING:
        return RunStatus.LOST, "submitted, and the scheduler no longer knows the job"
    where = f"the job ended ({state})" if state else "the scheduler no longer knows the job"
    return RunStatus.LOST, f"run.json says '{record_status}' but {where}"
