"""``tipi-runs multirun status`` and ``multirun resubmit``: a sweep's jobs from disk and one scheduler call.

Status reads each job's ``run.json`` and asks the scheduler once about all
job ids the manifest (or the records) know, then tells pending, running,
succeeded, failed, cancelled and lost apart (:func:`tipi.runs.scheduler.resolve`)
and rewrites ``summary.csv``. It never writes a run's ``run.json``.

Resubmit runs tipi again, as a multirun into the same sweep directory, with
one job per job to redo: each gets ``resume=<its run dir>`` (its stored config,
its ``last.pt``, its WandB run id, one more attempt in its ``run.json``) and
``hydra.sweep.subdir=${resume}`` (its own directory), with the launcher and
command line the sweep was first submitted with, detached.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tipi.core.record import RunStatus
from tipi.runs import manifest as manifest_io
from tipi.runs.errors import RunsError
from tipi.runs.scan import is_sweep_dir, read_run
from tipi.runs.scheduler import process_states, resolve, sacct_states
from tipi.runs.summary import job_dirs, job_row, read_json, write_summary

REDO = (RunStatus.FAILED, RunStatus.LOST, RunStatus.CANCELLED)


def absolute(path: Path | str) -> Path:
    """``path`` made absolute without resolving links, the way launchers and the manifest write it."""
    return Path(os.path.abspath(path))


def require_sweep(path: Path) -> Path:
    """``path`` as an absolute sweep directory, or a :class:`RunsError` saying what it is instead."""
    path = absolute(path)
    if not path.is_dir():
        raise RunsError(f"'{path}' does not exist", hint="Pass a sweep directory such as multirun/<date>/<time>.")
    if not is_sweep_dir(path):
        what = "a run, not a sweep" if (path / "run.json").is_file() else "neither a run nor a multirun"
        raise RunsError(
            f"'{path}' is {what} (no multirun.yaml, manifest.json or summary.csv in it)",
            hint="Pass a sweep directory such as multirun/<date>/<time>; `tipi-runs list` shows them.",
        )
    return path


def sweep_status(sweep_dir: Path, states: Callable[..., dict[str, str] | None] = sacct_states) -> list[dict[str, Any]]:
    """One row per job: the summary columns plus ``job_id`` and the scheduler's ``state``."""
    manifest = manifest_io.load(sweep_dir)
    known = manifest_io.current_job_ids(manifest)
    recent = manifest_io.recently_submitted(manifest)
    executor = (manifest or {}).get("executor")
    jobs = job_dirs(sweep_dir, known=[Path(d) for d in known])
    records = {job_dir: read_json(job_dir / "run.json") for _, job_dir in jobs}
    ids = {job_dir: known.get(str(job_dir)) or _record_job_id(records[job_dir]) for _, job_dir in jobs}
    slurm = executor == "slurm" or (executor is None and any(ids.values()))
    asked = [job_id for job_id in ids.values() if job_id]
    answer = (states(asked) if slurm else process_states(asked)) if asked else {}
    rows = []
    for num, job_dir in jobs:
        record, job_id = records[job_dir], ids[job_dir]
        if job_id is None:  # launcher=local: no scheduler; a dead process on this host is lost
            scanned = read_run(job_dir)
            status, why = scanned["status"], "" if record else scanned["error"]
            state = None
        else:
            state = (answer or {}).get(job_id)
            status, why = resolve(
                (record or {}).get("status"), state, slurm=slurm, just_submitted=str(job_dir) in recent
            )
        row = job_row(num, job_dir, record, str(status))
        if why and status != RunStatus.SUCCEEDED:
            row["error"] = row["error"] or why
        row.update(job_id=job_id, state=state, scheduler_answered=answer is not None)
        rows.append(row)
    return rows


def _record_job_id(record: Mapping[str, Any] | None) -> str | None:
    attempts = (record or {}).get("attempts") or []
    slurm = attempts[-1].get("slurm") if attempts and isinstance(attempts[-1], dict) else None
    if not slurm:
        return None
    if "slurm_array_job_id" in slurm:
        return f"{slurm['slurm_array_job_id']}_{slurm.get('slurm_array_task_id')}"
    return str(slurm.get("slurm_job_id"))


def refresh(sweep_dir: Path) -> tuple[list[dict[str, Any]], Path]:
    """Rows of :func:`sweep_status`, written to ``summary.csv`` too."""
    rows = sweep_status(sweep_dir)
    return rows, write_summary(sweep_dir, rows)


def _quote(value: str) -> str:
    """A value for a Hydra override, quoted so that a path's characters stay a path."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def override_value(value: Any) -> str:
    """``value`` in Hydra's override grammar (``null``, ``true``, ``3``, ``'text'``, ``[..]``, ``{k: v}``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    return _quote(str(value))


def resubmit_command(sweep_dir: Path, manifest: Mapping[str, Any], run_dirs: list[Path]) -> list[str]:
    """The command that resubmits ``run_dirs`` as one detached multirun into ``sweep_dir``.

    A resumed run takes its config from its directory and refuses overrides
    that would change what its checkpoint means (``experiment=``, ``seed=``), so
    the command carries only what selects and sets up the launcher: its group
    choice, every setting it submitted with, the command line's ``launcher.*``
    keys (a pool's ``workers``, ``devices``, ``per_device``) and ``device=``
    (by which a pool takes GPUs or cores), and its ``hydra.*`` overrides
    (search path, ...).
    """
    command = manifest.get("command") or {}
    dropped = ("hydra.sweep.dir=", "hydra.sweep.subdir=", "hydra.mode=", "hydra.launcher.")
    args = [sys.executable, "-m", "tipi", "--multirun"]
    for config_dir in command.get("config_dirs", []):
        args += ["--config-dir", str(config_dir)]
    if command.get("launcher_choice"):
        args.append(f"launcher={command['launcher_choice']}")
    args += [o for o in command.get("hydra_overrides", []) if not o.startswith(dropped)]
    args += [
        o
        for o in command.get("task_overrides", [])
        if (o.startswith("launcher.") and not o.startswith("launcher.wait="))
        or (o.startswith("device=") and "," not in o)  # one device for every job, not a swept one
    ]
    args += [
        f"hydra.launcher.{key}={override_value(value)}"
        for key, value in (manifest.get("launcher") or {}).items()
        if key != "submitit_folder"
    ]  # it follows hydra.sweep.dir, as it did
    args += [
        f"hydra.sweep.dir={_quote(str(sweep_dir))}",
        "hydra.sweep.subdir=${resume}",
        "resume=" + ",".join(_quote(str(d)) for d in run_dirs),
        "launcher.wait=false",
    ]
    return args


def resubmit(sweep_dir: Path, statuses: tuple[str, ...] = REDO) -> tuple[list[dict[str, Any]], str]:
    """Resubmit the jobs whose status is in ``statuses``; return their rows and the launcher's output."""
    manifest = manifest_io.load(sweep_dir)
    if manifest is None:
        raise RunsError(
            f"'{sweep_dir}' has no manifest.json: it was not submitted by launcher=slurm or "
            "launcher=submitit_local, so there is nothing to submit again",
            hint="Resume a job of a local sweep in place: python -m tipi resume=<job dir>",
        )
    rows = sweep_status(sweep_dir)
    redo = [row for row in rows if row["status"] in statuses]
    if not redo:
        counts = ", ".join(f"{n} {s}" for s, n in _counts(rows).items())
        raise RunsError(
            f"nothing to resubmit in '{sweep_dir}': no job is {' / '.join(statuses)} ({counts})",
            hint="`tipi-runs multirun status <sweep>` shows every job's status.",
        )
    unresumable = [row for row in redo if not (Path(row["run_dir"]) / ".hydra" / "config.yaml").is_file()]
    if unresumable:
        dirs = ", ".join(row["run_dir"] for row in unresumable)
        raise RunsError(
            f"cannot resubmit {dirs}: no stored config (.hydra/config.yaml) to resume from",
            hint="Run those jobs' overrides again as a new sweep.",
        )
    args = resubmit_command(sweep_dir, manifest, [Path(row["run_dir"]) for row in redo])
    cwd = (manifest.get("command") or {}).get("cwd") or os.getcwd()
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RunsError(
            f"the resubmission failed (exit {proc.returncode}):\n{(proc.stderr or proc.stdout)[-3000:]}",
            hint="Command: " + " ".join(args),
        )
    return redo, proc.stdout


def _counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def counts_line(rows: list[dict[str, Any]]) -> str:
    """``3 succeeded, 1 running`` (statuses in the order of :class:`RunStatus`)."""
    counts = _counts(rows)
    order = [str(s) for s in RunStatus] + sorted(set(counts) - {str(s) for s in RunStatus})
    return ", ".join(f"{counts[s]} {s}" for s in order if s in counts) or "no jobs"
