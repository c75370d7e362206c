"""What a single run shows when it ends: its status, duration, objective, final metrics, best epoch, and where it is.

Printed by ``python -m tipi`` after every single run (success, failure, Ctrl-C),
read back from the run's own ``run.json`` and ``metrics.jsonl``, so it says what
the directory holds. A terminal gets it in colour; a log file or a pipe gets
the same lines in plain text; ``progress=none`` keeps it (it is the result,
not progress). A multirun prints its summary table instead.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from tipi.core.record import RunStatus

__all__ = ["best_epoch", "run_end_lines", "show_run_end"]

RESUMABLE = (RunStatus.FAILED, RunStatus.INTERRUPTED, RunStatus.REQUEUED)


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def best_epoch(run_dir: Path, monitor: str | None, mode: str = "max") -> tuple[int, float] | None:
    """(epoch counted from 1, value) of the best ``monitor`` value in ``metrics.jsonl``, or None."""
    if not monitor:
        return None
    best: tuple[int, float] | None = None
    try:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:  # a line cut by a crash: the rest are whole
            continue
        value, epoch = row.get(monitor), row.get("epoch")
        if not isinstance(value, (int, float)) or not isinstance(epoch, int):
            continue
        if best is None or (value > best[1] if mode == "max" else value < best[1]):
            best = (epoch + 1, float(value))
    return best


def _split_lines(metrics: dict[str, Any]) -> list[str]:
    """``test: pixel_acc 0.76  mean_iou 0.19 ...``, one line a split; per-class values left to ``tipi-runs show``."""
    splits: dict[str, list[str]] = {}
    for key, value in metrics.items():
        split, _, name = str(key).partition("/")
        if not name or "/" in name or split == "train" or not isinstance(value, (int, float)):
            continue
        splits.setdefault(split, []).append(f"{name} {_number(value)}")
    return [f"{split}: " + "  ".join(values) for split, values in splits.items()]


def run_end_lines(
    run_dir: Path, objective: str | None = None, monitor: str | None = None, mode: str = "max"
) -> list[str]:
    """The lines that tell how the run in ``run_dir`` ended (empty when it holds no run record)."""
    try:
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    status = str(record.get("status") or "unknown")
    shown = os.path.relpath(run_dir) if not os.path.relpath(run_dir).startswith("..") else str(run_dir)
    duration = record.get("duration_s")
    took = f" in {duration:.1f} s" if isinstance(duration, (int, float)) else ""
    lines = [f"run {status}{took}: {shown}"]
    value = record.get("objective")
    if value is not None:
        lines.append(f"objective: {objective + ' = ' if objective else ''}{_number(value)}")
    best = best_epoch(run_dir, monitor, mode)
    if best is not None:
        lines.append(f"best epoch: {best[0]} ({monitor} {_number(best[1])})")
    lines += _split_lines(record.get("metrics") or {})
    if record.get("error"):
        lines.append(f"error: {str(record['error']).splitlines()[0]}")
    if status in RESUMABLE:
        lines.append(f"resume: python -m tipi resume={shown}")
    else:
        lines.append(f"inspect: tipi-runs show {shown}")
    return lines


def show_run_end(
    run_dir: Path,
    objective: str | None = None,
    monitor: str | None = None,
    mode: str = "max",
    stream: TextIO | None = None,
) -> None:
    """Print :func:`run_end_lines`: in colour on a terminal (Rich), as plain lines anywhere else."""
    stream = stream or sys.stdout
    lines = run_end_lines(run_dir, objective, monitor, mode)
    if not lines:
        return
    if not stream.isatty():
        stream.write("\n".join(lines) + "\n")
        stream.flush()
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(file=stream, highlight=False)
    head, *rest = lines
    colour = "green" if head.startswith(f"run {RunStatus.SUCCEEDED}") else "red"
    console.print(f"[bold {colour}]{escape(head)}[/]")
    for line in rest:
        label, _, text = line.partition(": ")
        console.print(f"  [bold]{escape(label)}[/]: {escape(text)}")
