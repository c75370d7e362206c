"""Hydra callbacks: the summary of every multirun, whatever the launcher."""

from __future__ import annotations

import atexit
import csv
import io
import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from tipi.core.record import atomic_write_text

COLUMNS = ("job", "overrides", "status", "objective", "duration_s", "error", "run_dir")


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory under ``sweep_dir``, read from its ``run.json``."""
    rows = []
    for job_dir in sorted((p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                          key=lambda p: int(p.name)):
        record = _read_json(job_dir / "run.json") or {}
        overrides = record.get("overrides")
        if overrides is None and (job_dir / ".hydra" / "overrides.yaml").exists():
            overrides = OmegaConf.to_container(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
        status = record.get("status", "not started")
        if status == "running":
            status = "failed"  # the job died without writing its end (e.g. SIGKILL)
            record.setdefault("error", "job ended without finishing its run record (killed?)")
        rows.append({
            "job": int(job_dir.name),
            "overrides": " ".join(overrides or []),
            "status": status,
            "objective": record.get("objective"),
            "duration_s": record.get("duration_s"),
            "error": (record.get("error") or "").splitlines()[0] if record.get("error") else "",
            "run_dir": str(job_dir),
        })
    return rows


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_summary(sweep_dir: Path, rows: list[dict[str, Any]], filename: str = "summary.csv") -> Path:
    """Write ``rows`` as CSV into ``sweep_dir`` atomically; return the path."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path = sweep_dir / filename
    atomic_write_text(path, buf.getvalue())
    return path


def print_summary(rows: list[dict[str, Any]], title: str) -> None:
    """The same rows as a Rich table on the console."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("job", "overrides", "status", "objective", "duration_s", "error"):
        table.add_column(col)
    for row in rows:
        style = "green" if row["status"] == "succeeded" else "red"
        objective = row["objective"]
        table.add_row(str(row["job"]), row["overrides"], f"[{style}]{row['status']}[/]",
                      f"{objective:.4g}" if isinstance(objective, float) else str(objective or ""),
                      str(row["duration_s"] or ""), row["error"])
    Console(stderr=True).print(table)


class SweepSummary(Callback):
    """Writes ``summary.csv`` and prints a table when a multirun ends.

    When a job failed, Hydra's sweeper raises before ``on_multirun_end``; the
    summary is then written at interpreter exit instead, so it is never lost.
    """

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.done = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        atexit.register(self._finish)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._finish()

    def _finish(self) -> None:
        if self.done or self.sweep_dir is None or not self.sweep_dir.is_dir():
            return
        self.done = True
        rows = collect_jobs(self.sweep_dir)
        path = write_summary(self.sweep_dir, rows)
        print_summary(rows, title=f"multirun summary: {path}")
