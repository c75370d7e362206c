"""The sweep summary, in one place: rows from each job's ``run.json``, ``summary.csv``, a Rich table.

A Hydra multirun writes it when it ends (:class:`tipi.callbacks.SweepSummary`),
``tipi-runs multirun status`` refreshes it at any time after, and a WandB sweep
(:mod:`tipi.wandb_sweeps.summary`) writes its own rows through the same CSV and
table functions. Plain JSON and libyaml only: no OmegaConf, no torch.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tipi.core.record import RunStatus, atomic_write_text

COLUMNS = ("job", "overrides", "status", "objective", "duration_s", "attempts", "error", "note", "run_dir")
SUMMARY_FILE = "summary.csv"
YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: 20x OmegaConf's
# statuses a table shows in green / yellow; every other one is red
GOOD = (RunStatus.SUCCEEDED,)
UNDERWAY = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.REQUEUED)


def first_line(text: str | None) -> str:
    """The first line of ``text`` (errors are one line in tables)."""
    return ((text or "").strip().splitlines() or [""])[0]


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``; None if it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_yaml(path: Path) -> Any:
    """Plain YAML at ``path`` (libyaml); None if it is missing or unreadable."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=YAML_LOADER)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None


def job_num(job_dir: Path) -> int | None:
    """``hydra.job.num`` from a job's saved Hydra config, else its directory name if that is a number."""
    saved = read_yaml(job_dir / ".hydra" / "hydra.yaml")
    try:
        num = saved["hydra"]["job"]["num"]
    except (KeyError, TypeError):
        num = None
    if isinstance(num, int):
        return num
    return int(job_dir.name) if job_dir.name.isdigit() else None


def job_dirs(sweep_dir: Path, known: Iterable[Path] = ()) -> list[tuple[int, Path]]:
    """``(job number, directory)`` of every job under ``sweep_dir``, by number.

    A job directory holds Hydra's ``.hydra/`` or a ``run.json`` (a job lost
    before Hydra set it up gets one from the launcher), is named in the
    sweep's manifest (``known``: a job that never started), or is an empty
    numbered directory (a job killed before it wrote anything); runs nested inside
    a job (a WandB sweep's runs) belong to that job.
    """
    found = {p.parent for p in sweep_dir.rglob(".hydra")} | {p.parent for p in sweep_dir.rglob("run.json")}
    found |= {Path(p) for p in known}
    # Hydra's own numbered job directory, left empty by a job killed before it wrote anything
    found |= {p for p in sweep_dir.iterdir() if p.name.isdigit() and p.is_dir() and not any(p.iterdir())}
    jobs = []
    for job_dir in found:
        if job_dir == sweep_dir or {".submitit", ".hydra", ".workers"} & set(job_dir.parts):
            continue
        if any(parent in found for parent in job_dir.parents if parent != sweep_dir):
            continue
        num = job_num(job_dir)
        jobs.append((num if num is not None else -1, job_dir))
    return sorted(jobs, key=lambda item: (item[0], str(item[1])))


def duration(record: Mapping[str, Any]) -> float | None:
    """Seconds the run took, summed over its attempts when it was requeued or resubmitted."""
    attempts = record.get("attempts") or []
    if len(attempts) <= 1:
        return record.get("duration_s")
    total = 0.0
    for attempt in attempts:
        try:
            total += (datetime.fromisoformat(attempt["end"]) - datetime.fromisoformat(attempt["start"])).total_seconds()
        except (KeyError, TypeError, ValueError):
            return record.get("duration_s")
    return round(total, 3)


def job_overrides(job_dir: Path, record: Mapping[str, Any]) -> list[str]:
    """The job's overrides: from ``run.json``, else Hydra's ``.hydra/overrides.yaml``."""
    overrides = record.get("overrides")
    # a resumed run (resume=..., sweep resubmit) recorded the overrides that resumed it; Hydra kept the first ones
    if not isinstance(overrides, list) or any(str(o).startswith("resume=") for o in overrides):
        stored = read_yaml(job_dir / ".hydra" / "overrides.yaml")
        overrides = stored if isinstance(stored, list) else overrides
    return [str(o) for o in overrides] if isinstance(overrides, list) else []


def job_row(num: int, job_dir: Path, record: Mapping[str, Any] | None, status: str) -> dict[str, Any]:
    """One summary row (the keys of :data:`COLUMNS`)."""
    record = record or {}
    return {
        "job": num,
        "overrides": " ".join(job_overrides(job_dir, record)),
        "status": str(status),
        "objective": record.get("objective"),
        "duration_s": duration(record),
        "attempts": len(record.get("attempts") or []),
        "error": first_line(record.get("error")),
        "note": first_line(record.get("retried_alone")),  # launcher=pool: ran out of GPU memory beside others
        "run_dir": str(job_dir),
    }


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory under ``sweep_dir`` of a multirun that is over.

    Nobody will finish a record that still says running once the multirun has
    ended: the job was killed (SIGKILL, OOM) or lost, so its row says failed.
    ``tipi-runs multirun status`` asks the scheduler instead (:mod:`tipi.runs.multirun`).
    """
    rows = []
    for num, job_dir in job_dirs(sweep_dir):
        record = read_json(job_dir / "run.json")
        row = job_row(num, job_dir, record, (record or {}).get("status", "not started"))
        if row["status"] in (RunStatus.RUNNING, RunStatus.REQUEUED):
            row["error"] = row["error"] or f"run.json still says '{row['status']}': the job was killed or lost"
            row["status"] = str(RunStatus.FAILED)
        rows.append(row)
    return rows


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``rows`` (only ``columns``) as CSV to ``path`` atomically; return the path."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return path


def write_summary(sweep_dir: Path, rows: list[dict[str, Any]], filename: str = SUMMARY_FILE) -> Path:
    """Write the rows of a multirun as ``<sweep dir>/summary.csv``; return its path."""
    return write_csv(Path(sweep_dir) / filename, COLUMNS, rows)


def best_row(rows: Sequence[Mapping[str, Any]], mode: str = "max") -> Mapping[str, Any] | None:
    """The succeeded row with the best objective (``mode`` "max" or "min"), if any has one."""
    scored = [
        row
        for row in rows
        if row["status"] == RunStatus.SUCCEEDED
        and isinstance(row["objective"], (int, float))
        and not isinstance(row["objective"], bool)
    ]
    if not scored:
        return None
    pick = min if mode == "min" else max
    return pick(scored, key=lambda row: row["objective"])


def status_markup(status: str) -> str:
    """``status`` coloured for a Rich table: green done, yellow underway, red otherwise."""
    style = "green" if status in GOOD else "yellow" if status in UNDERWAY else "red"
    return f"[{style}]{status}[/]"


def number(value: Any, fmt: str = ".4g") -> str:
    """A table cell for a number (empty for None)."""
    if isinstance(value, float):
        return format(value, fmt)
    return "" if value is None else str(value)


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Mapping[str, str]],
    caption: str | None = None,
    console: Any = None,
) -> None:
    """A Rich table of ``rows`` (cells already markup) on ``console`` (default: stderr)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    right = ("objective", "duration_s", "attempts", "job")
    table = Table(title=title and escape(title), caption=caption and escape(caption))
    for col in columns:
        table.add_column(col, overflow="fold", justify="right" if col in right else "left")
    for row in rows:
        table.add_row(*(row.get(col, "") for col in columns))
    (console or Console(stderr=True)).print(table)


def relative(path: str, base: Path) -> str:
    """``path`` relative to ``base`` when it lies below it."""
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return path


def print_summary(
    rows: list[dict[str, Any]], sweep_dir: Path, summary_path: Path, mode: str = "max", console: Any = None
) -> None:
    """A multirun's rows as a Rich table, kept narrow enough for a terminal.

    Overrides that all jobs share go to the caption, run directories are shown
    relative to the sweep directory, and the attempts and error columns appear
    only when some job was requeued or failed.
    """
    from rich.console import Console
    from rich.markup import escape

    console = console or Console(stderr=True)
    split = [row["overrides"].split() for row in rows]
    common = [o for o in split[0] if all(o in s for s in split[1:])] if len(rows) > 1 else []
    caption = f"sweep: {sweep_dir}" + (f"\ncommon overrides: {' '.join(common)}" if common else "")
    columns = ["job", "overrides", "status", "objective", "duration_s"]
    columns += ["attempts"] * any(row["attempts"] > 1 for row in rows)
    columns += ["error"] * any(row["error"] for row in rows)
    columns += ["note"] * any(row.get("note") for row in rows)
    columns += ["run_dir"]
    cells = [
        {
            "job": str(row["job"]),
            "overrides": escape(" ".join(o for o in overrides if o not in common)),
            "status": status_markup(row["status"]),
            "objective": number(row["objective"]),
            "duration_s": number(row["duration_s"], ".1f"),
            "attempts": str(row["attempts"]),
            "error": escape(row["error"]),
            "note": escape(row.get("note") or ""),
            "run_dir": escape(relative(row["run_dir"], sweep_dir)),
        }
        for row, overrides in zip(rows, split, strict=True)
    ]
    print_table(f"multirun summary: {summary_path}", columns, cells, caption, console)
    best = best_row(rows, mode)
    if best is not None and len(rows) > 1:
        console.print(
            f"best ({mode}): job {best['job']}, objective {best['objective']:.4g}: "
            f"{escape(relative(best['run_dir'], Path.cwd()))}"
        )
