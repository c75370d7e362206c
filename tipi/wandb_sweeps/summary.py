"""The end of a WandB sweep: one row per run (parameters, status, objective) as ``sweep_summary.csv`` and a table.

Only the rows are a WandB sweep's own (its runs are trials with parameters);
the CSV and the table are written by :mod:`tipi.runs.summary`, the one home of
sweep summaries, which the multirun summary uses as well.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tipi.runs.summary import print_table, status_markup, write_csv
from tipi.wandb_sweeps.trial import Trial

SUMMARY_FILE = "sweep_summary.csv"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def summary_rows(
    trials: Sequence[Trial], parameter_names: Sequence[str] = ()
) -> tuple[list[str], list[dict[str, str]]]:
    """Columns and rows: ``run``, one column per parameter, ``status``, ``objective``, ``duration_s``, ..."""
    params: list[str] = list(parameter_names)
    for trial in trials:
        params += [k for k in trial.params if k not in params]
    columns = ["run", *params, "status", "objective", "duration_s", "wandb_run_id", "error"]
    rows = []
    for trial in trials:
        row = {
            "run": trial.name,
            "status": trial.status,
            "objective": _cell(trial.objective),
            "duration_s": _cell(trial.duration_s),
            "wandb_run_id": _cell(trial.wandb_run_id),
            "error": (trial.error or "").splitlines()[0] if trial.error else "",
        }
        row.update({p: _cell(trial.params.get(p)) for p in params})
        rows.append(row)
    return columns, rows


def write_summary(sweep_dir: Path, trials: Sequence[Trial], parameter_names: Sequence[str] = ()) -> Path:
    """Write ``<sweep dir>/sweep_summary.csv`` atomically; return its path."""
    columns, rows = summary_rows(trials, parameter_names)
    return write_csv(Path(sweep_dir) / SUMMARY_FILE, columns, rows)


def print_summary(
    trials: Sequence[Trial],
    parameter_names: Sequence[str],
    title: str,
    metric: str | None = None,
    best: Trial | None = None,
) -> None:
    """The same rows as a Rich table on stderr; the best run is marked."""
    from rich.markup import escape

    columns, rows = summary_rows(trials, parameter_names)
    shown = [c for c in columns if c not in ("wandb_run_id", "error")] + (
        ["error"] if any(r["error"] for r in rows) else []
    )
    cells_rows = []
    for trial, row in zip(trials, rows, strict=True):
        cells = {k: escape(v) for k, v in row.items()}  # values like [1, 2] are not markup
        objective = trial.objective
        cells["objective"] = f"{objective:.4g}" if objective is not None else ""
        cells["status"] = status_markup(trial.status)
        for p in columns[1:-5]:
            value = trial.params.get(p)
            if isinstance(value, float):
                cells[p] = f"{value:.4g}"
        if best is not None and trial is best:
            cells["run"] = f"[bold]{escape(trial.name)} *[/]"
        cells_rows.append(cells)
    print_table(title, shown, cells_rows, caption=f"objective: {metric}" if metric else None)
