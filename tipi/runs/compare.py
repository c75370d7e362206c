"""``tipi-runs compare SWEEP``: one PNG of a sweep, because people would rather look than read.

Top row: the objective against each swept parameter (the overrides whose
values differ between jobs; numbers on a numeric axis, anything else as
categories). Bottom: the validation curve of every job, overlaid, read from
its ``metrics.jsonl``. matplotlib is imported here only, with the Agg backend.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tipi.runs.errors import RunsError
from tipi.runs.scan import run_settings
from tipi.runs.summary import job_dirs, job_overrides, read_json

FIGURE = "compare.png"


def swept_parameters(per_job: Sequence[Mapping[str, str]]) -> list[str]:
    """The override keys whose values differ between jobs (all of them when there is one job)."""
    keys: list[str] = []
    for params in per_job:
        keys += [k for k in params if k not in keys]
    if len(per_job) <= 1:
        return keys
    return [k for k in keys if len({params.get(k) for params in per_job}) > 1]


def _params(overrides: Sequence[str]) -> dict[str, str]:
    pairs = (o.split("=", 1) for o in overrides if "=" in o)
    return {key.lstrip("+~"): value for key, value in pairs}


def curve_key(metric_rows: Sequence[Mapping[str, Any]], objective: str | None) -> str | None:
    """The validation metric to draw: the objective's ``val/`` twin if logged, else the first ``val/`` key."""
    keys = [k for row in metric_rows for k in row if k.startswith("val/") and isinstance(row[k], (int, float))]
    if objective and "/" in objective and f"val/{objective.split('/', 1)[1]}" in keys:
        return f"val/{objective.split('/', 1)[1]}"
    return keys[0] if keys else None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of the run's ``metrics.jsonl`` (a line cut short by a killed job is skipped)."""
    rows = []
    try:
        with open(run_dir / "metrics.jsonl", encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a killed job
                if isinstance(row, dict):
                    rows.append(row)
    except OSError:
        pass
    return rows


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    """Per job: number, parameters, objective, validation metric rows."""
    jobs = []
    for num, job_dir in job_dirs(sweep_dir):
        record = read_json(job_dir / "run.json") or {}
        jobs.append(
            {
                "job": num,
                "params": _params(job_overrides(job_dir, record)),
                "objective": record.get("objective"),
                "objective_name": run_settings(job_dir).get("objective"),
                "metrics": read_metrics(job_dir),
            }
        )
    return jobs


def _as_numbers(values: Sequence[str]) -> list[float] | None:
    try:
        return [float(v) for v in values]
    except ValueError:
        return None


def compare(sweep_dir: Path, out: Path | None = None) -> Path:
    """Draw the figure for ``sweep_dir``; return where it was written (default ``<sweep dir>/compare.png``)."""
    jobs = collect(sweep_dir)
    if not jobs:
        raise RunsError(f"'{sweep_dir}' has no jobs to compare yet", hint="`tipi-runs multirun status` shows them.")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    swept = swept_parameters([job["params"] for job in jobs]) or ["job"]
    fig, axes = plt.subplots(2, max(1, len(swept)), figsize=(4.5 * max(2, len(swept)), 8), squeeze=False)
    for ax, key in zip(axes[0], swept, strict=False):
        _objective_plot(ax, jobs, key)
    for ax in axes[1][1:]:
        ax.remove()
    _curves_plot(axes[1][0], jobs, swept)
    fig.suptitle(f"sweep {sweep_dir}", fontsize=9)
    fig.tight_layout()
    path = out or sweep_dir / FIGURE
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _objective_plot(ax: Any, jobs: Sequence[Mapping[str, Any]], key: str) -> None:
    scored = [job for job in jobs if isinstance(job["objective"], (int, float))]
    values = [str(job["job"]) if key == "job" else job["params"].get(key, "") for job in scored]
    numbers = _as_numbers(values)
    if numbers is not None:
        ax.scatter(numbers, [job["objective"] for job in scored])
        if numbers and min(numbers) > 0 and max(numbers) / min(numbers) >= 100:
            ax.set_xscale("log")
    else:
        labels = sorted(set(values))
        ax.scatter([labels.index(v) for v in values], [job["objective"] for job in scored])
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    name = next((job["objective_name"] for job in jobs if job["objective_name"]), None) or "objective"
    ax.set_xlabel(key)
    ax.set_ylabel(name)
    ax.set_title(f"{name} vs {key}" + ("" if scored else " (no job has an objective yet)"), fontsize=9)


def _curves_plot(ax: Any, jobs: Sequence[Mapping[str, Any]], swept: Sequence[str]) -> None:
    key = next((k for job in jobs if (k := curve_key(job["metrics"], job["objective_name"]))), None)
    for job in jobs:
        points = [(row.get("step", i), row[key]) for i, row in enumerate(job["metrics"]) if key and key in row]
        if points:
            label = f"{job['job']}: " + " ".join(f"{k}={job['params'].get(k)}" for k in swept if k != "job")
            ax.plot(*zip(*points, strict=True), marker=".", label=label.strip())
    ax.set_xlabel("step")
    ax.set_ylabel(key or "validation metric")
    ax.set_title(f"{key} of every job" if key else "no validation metrics logged yet", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
