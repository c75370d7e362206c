"""Find run directories and read each into one row, fast: ``os.scandir``, ``json`` and libyaml only.

A run directory holds ``run.json`` or Hydra's ``.hydra/``. One whose
``run.json`` is missing or unreadable, or a job directory of a sweep that
holds nothing at all (killed before it wrote anything), is a row with status
``corrupt``, never an error. The walk does not descend into a run (its
``checkpoints/``, ``wandb/``, ...), except into a run without a record of its
own, whose runs are nested (a WandB sweep).
"""

from __future__ import annotations

import fnmatch
import os
import re
import socket
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from tipi.core.lock import holder, lock_path
from tipi.core.record import RunStatus
from tipi.runs.summary import YAML_LOADER, duration, first_line, job_overrides, read_json

SKIP = frozenset(
    {
        ".hydra",
        ".submitit",
        "checkpoints",
        "wandb",
        "figures",
        "tensorboard",
        "mlruns",
        "__pycache__",
        ".git",
        "node_modules",
    }
)
SWEEP_MARKERS = ("multirun.yaml", "manifest.json", "summary.csv")
MANIFEST = "manifest.json"


WANDB_SWEEP_SUMMARY = "sweep_summary.csv"  # tipi.wandb_sweeps.summary.SUMMARY_FILE


def is_wandb_sweep_dir(path: Path) -> bool:
    """A WandB sweep's directory: its own record beside numbered trial directories that hold theirs."""
    if not (path / "run.json").is_file():
        return False
    if (path / WANDB_SWEEP_SUMMARY).is_file():
        return True
    try:
        return any(p.name.isdigit() and (p / "run.json").is_file() for p in path.iterdir())
    except OSError:
        return False


def is_sweep_dir(path: Path) -> bool:
    """A directory of jobs or trials: a multirun's (``multirun.yaml``, a manifest or a summary) or a WandB sweep's."""
    return any((path / name).is_file() for name in SWEEP_MARKERS) or is_wandb_sweep_dir(path)


def is_run_dir(path: Path) -> bool:
    """A run's directory: it holds ``run.json`` or ``.hydra/``."""
    return (path / "run.json").is_file() or (path / ".hydra").is_dir()


def find_runs(roots: Iterable[Path]) -> Iterator[Path]:
    """Every run directory under ``roots`` (each root may itself be a run)."""
    for root in roots:
        if root.is_dir():
            yield from _walk(Path(os.path.abspath(root)))  # absolute: rows name the same directory from anywhere


def _walk(path: Path) -> Iterator[Path]:
    try:
        with os.scandir(path) as it:
            entries = list(it)
    except OSError:
        return
    names = {e.name for e in entries}
    subdirs = sorted(e.name for e in entries if e.name not in SKIP and _is_dir(e))
    if "run.json" in names:
        if is_wandb_sweep_dir(path):  # a WandB sweep: its trials are the runs (its own record sums them up)
            yield from (run for name in subdirs if name.isdigit() for run in _walk(path / name))
            return
        yield path
        return
    nested = [run for name in subdirs for run in _walk(path / name)]
    if ".hydra" in names and not nested:
        yield path  # Hydra set it up, the run never recorded itself
        return
    if not nested and not names and any(m in os.listdir(path.parent) for m in SWEEP_MARKERS):
        yield path  # an empty job directory of a sweep: killed before it wrote anything
        return
    yield from nested


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def top_level_block(text: str, key: str) -> Any:
    """The value of one top-level ``key`` of a YAML file that Hydra saved, parsing only its lines.

    Hydra writes top-level keys at column 0 and their contents indented, so the
    block ends at the next line that starts in column 0. Reading the ``run:``
    block this way costs a twentieth of parsing the whole config.
    """
    match = re.search(rf"^{re.escape(key)}:.*$", text, re.MULTILINE)
    if match is None:
        return None
    lines = [match.group(0)]
    for line in text[match.end() + 1 :].splitlines():
        if line and not line[0].isspace() and not line.startswith("- "):
            break
        lines.append(line)
    try:
        loaded = yaml.load("\n".join(lines), Loader=YAML_LOADER)
    except yaml.YAMLError:
        return None
    return loaded.get(key) if isinstance(loaded, dict) else None


def run_settings(run_dir: Path) -> dict[str, Any]:
    """The ``run:`` block of the run's stored config (name, tags, objective, objective_mode)."""
    try:
        text = (run_dir / ".hydra" / "config.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    block = top_level_block(text, "run")
    return block if isinstance(block, dict) else {}


_HOST = socket.gethostname()


def _alive(record: Mapping[str, Any], run_dir: Path) -> bool:
    """Whether a run that says it runs still has its process.

    A run directory with a lock file answers for itself, on any host (a live
    run holds the lock; the kernel drops it when the process dies). Without
    one (a run from before the lock), only on its own host, outside SLURM.
    """
    if lock_path(run_dir).exists():
        return holder(run_dir) is not None
    pid = record.get("pid")
    if record.get("slurm") or record.get("host") != _HOST or not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def read_run(run_dir: Path) -> dict[str, Any]:
    """One run as a row: status, objective, duration, start, name, tags, overrides, ... and ``record``.

    ``record`` is ``run.json`` as stored (None when missing or corrupt). A run
    whose record says running but whose process is gone (same host, no SLURM) is
    ``lost``; a SLURM run's state is the scheduler's to tell (``sweep status``).
    """
    record = read_json(run_dir / "run.json")
    settings = run_settings(run_dir)
    status = str(record.get("status") or RunStatus.CORRUPT) if record else str(RunStatus.CORRUPT)
    if status in (RunStatus.RUNNING,) and record and not _alive(record, run_dir):
        status = str(RunStatus.LOST)
    rec = record or {}
    tags = rec.get("tags", settings.get("tags"))
    attempts = rec.get("attempts") or []
    slurm = (attempts[-1].get("slurm") if attempts and isinstance(attempts[-1], dict) else None) or {}
    problem = None if record else ("run.json is unreadable" if (run_dir / "run.json").exists() else "no run.json")
    return {
        "run_dir": str(run_dir),
        "status": status,
        "objective": rec.get("objective"),
        "objective_name": rec.get("objective_name", settings.get("objective")),
        "objective_mode": str(rec.get("objective_mode") or settings.get("objective_mode") or "max"),
        "duration_s": duration(rec),
        "started": rec.get("started"),
        "name": rec.get("name") or settings.get("name"),
        "tags": [str(t) for t in tags] if isinstance(tags, list) else [],
        "overrides": job_overrides(run_dir, rec),
        "attempts": len(attempts),
        "error": first_line(rec.get("error")) or problem or "",
        "wandb_run_id": rec.get("wandb_run_id"),
        "slurm_job_id": _slurm_id(slurm),
        "host": rec.get("host"),
        "record": record,
    }


def _slurm_id(slurm: Mapping[str, Any]) -> str | None:
    if "slurm_array_job_id" in slurm:
        return f"{slurm['slurm_array_job_id']}_{slurm.get('slurm_array_task_id')}"
    value = slurm.get("slurm_job_id")
    return str(value) if value is not None else None


def parse_since(text: str) -> datetime:
    """``--since``: an ISO date or time (``2026-11-30``, ``2026-11-30T14:00``) or an age (``90m``, ``6h``, ``2d``)."""
    age = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text.strip())
    if age:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[age.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: float(age.group(1))})
    when = datetime.fromisoformat(text.strip())
    return when if when.tzinfo else when.astimezone()


def keep(
    row: Mapping[str, Any], *, statuses: set[str], tags: set[str], since: datetime | None, globs: list[str]
) -> bool:
    """Whether ``row`` passes the filters (an empty filter passes everything)."""
    if statuses and row["status"] not in statuses:
        return False
    if tags and not tags <= set(row["tags"]):
        return False
    if since is not None:
        try:
            started = datetime.fromisoformat(row["started"] or "")
        except ValueError:
            return False
        if (started if started.tzinfo else started.astimezone()) < since:
            return False
    return not globs or any(
        fnmatch.fnmatch(row["run_dir"], g) or fnmatch.fnmatch(row["run_dir"], f"*{g}*") for g in globs
    )


def objective_key(row: Mapping[str, Any]) -> tuple[int, float]:
    """Sort key: best objective first, by each run's own ``objective_mode``; runs without one last."""
    value = row["objective"]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return (1, 0.0)
    return (0, -value if row["objective_mode"] != "min" else value)
