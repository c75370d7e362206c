"""``<sweep dir>/manifest.json``: what a submitit launcher submitted, so a sweep outlives its terminal.

Written by tipi's ``slurm`` and ``submitit_local`` launchers as soon as the
jobs are submitted (``launcher.wait`` true or false), and extended by
``tipi-runs multirun resubmit``. One entry per job: its number, overrides, run
directory and every scheduler job id it had (the last is the current one);
plus what is needed to submit again the same way (the launcher's settings,
the command line's overrides, config directories and working directory).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tipi.core.record import atomic_write_text

MANIFEST_FILE = "manifest.json"
VERSION = 1
# SLURM's accounting (sacct) can lag behind sbatch; a job submitted this recently that it does not know is pending
RECENT_S = 300.0


def load(sweep_dir: Path) -> dict[str, Any] | None:
    """The sweep's manifest, or None when it has none (a ``launcher=local`` sweep) or it is unreadable."""
    try:
        data = json.loads((Path(sweep_dir) / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("jobs"), list) else None


def record_submission(
    sweep_dir: Path,
    *,
    executor: str,
    launcher: Mapping[str, Any],
    wait: bool,
    submitted: Sequence[Mapping[str, Any]],
    command: Mapping[str, Any],
) -> Path:
    """Add submitted jobs (``num``, ``overrides``, ``run_dir``, ``job_id``) to the manifest; return its path.

    A job already in the manifest (same run directory: a resubmission) gains
    its new job id; the launcher settings and command of the first submission
    are kept, since they are what a resubmission repeats.
    """
    sweep_dir = Path(sweep_dir)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    data = load(sweep_dir) or {
        "version": VERSION,
        "executor": executor,
        "launcher": dict(launcher),
        "command": dict(command),
        "jobs": [],
    }
    by_dir = {job["run_dir"]: job for job in data["jobs"] if isinstance(job, dict) and "run_dir" in job}
    for job in submitted:
        entry = by_dir.get(str(job["run_dir"]))
        if entry is None:
            entry = {
                "num": job["num"],
                "overrides": list(job["overrides"]),
                "run_dir": str(job["run_dir"]),
                "job_ids": [],
                "submitted": [],
            }
            data["jobs"].append(entry)
            by_dir[entry["run_dir"]] = entry
        entry["job_ids"].append(str(job["job_id"]))
        entry["submitted"].append(now)
    data["wait"] = wait
    data["jobs"].sort(key=lambda job: job.get("num", -1))
    path = sweep_dir / MANIFEST_FILE
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")
    return path


def current_job_ids(manifest: Mapping[str, Any] | None) -> dict[str, str]:
    """``{run dir: the job id it was last submitted as}``."""
    if not manifest:
        return {}
    return {
        job["run_dir"]: job["job_ids"][-1]
        for job in manifest.get("jobs", [])
        if isinstance(job, dict) and job.get("job_ids") and "run_dir" in job
    }


def recently_submitted(manifest: Mapping[str, Any] | None, within_s: float = RECENT_S) -> set[str]:
    """Run directories whose last submission is less than ``within_s`` seconds old."""
    now = datetime.now(UTC)
    recent = set()
    for job in (manifest or {}).get("jobs", []):
        try:
            when = datetime.fromisoformat(job["submitted"][-1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if (now - when).total_seconds() < within_s:
            recent.add(job["run_dir"])
    return recent
