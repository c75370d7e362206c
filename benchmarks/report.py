"""Results: one row per figure, each beside its goal; written as JSON and as a Markdown table."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.stats import Stats


@dataclass
class Row:
    """One measured figure: tipi's value, the baseline's, how they compare, and the goal.

    ``met`` is True / False when the row has a goal, None when it is context only
    or was not measured.
    """

    what: str
    tipi: Stats | str | None = None
    baseline: Stats | str | None = None
    compare: str = ""
    goal: str = ""
    met: bool | None = None
    value: float | None = None  # the number judged against the goal, for JSON readers

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        def conv(x: Stats | str | None) -> Any:
            return x.as_dict() if isinstance(x, Stats) else x

        return {"what": self.what, "tipi": conv(self.tipi), "baseline": conv(self.baseline),
                "compare": self.compare, "goal": self.goal, "met": self.met, "value": _finite(self.value)}


@dataclass
class Section:
    """The rows of one measurement, with notes and the raw samples behind them."""

    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: str | None = None  # why the section did not run
    error: str | None = None  # why the section failed

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {"title": self.title, "rows": [r.as_dict() for r in self.rows], "notes": self.notes,
                "raw": self.raw, "seconds": round(self.seconds, 1), "skipped": self.skipped, "error": self.error}


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def verdict(met: bool | None) -> str:
    """The goal column's mark."""
    return {True: "met", False: "**missed**", None: ""}[met]


def _cell(x: Stats | str | None) -> str:
    if x is None:
        return ""
    text = x.fmt() if isinstance(x, Stats) else str(x)
    return text.replace("|", "\\|")


def markdown(sections: list[Section], header: dict[str, Any]) -> str:
    """The results as one Markdown table per section, with the machine and command on top."""
    lines = [f"Command: `{header['command']}`  ",
             f"Date: {header['date']}  ",
             f"Machine: {header['machine'].get('cpu')}, {header['machine'].get('cores')} cores, "
             f"load average at start {header['machine'].get('load_avg_start')}; Python "
             f"{header['machine'].get('python')}, torch {header['machine'].get('torch')}, hydra-core "
             f"{header['machine'].get('hydra-core')}, wandb {header['machine'].get('wandb')}  ",
             f"Mode: {header['mode']}; torch threads: {header.get('threads', 'torch default')}; "
             f"total {header['seconds']:.0f} s", "",
             "Figures are medians with the [min–max] of the repeats (the noise) and the number of samples; "
             "tipi and its baseline ran interleaved (A B A B) in the same run.", ""]
    goals = [r for s in sections for r in s.rows if r.met is not None]
    met = sum(1 for r in goals if r.met)
    lines += [f"Goals met: {met} of {len(goals)}.", ""]
    for section in sections:
        lines.append(f"### {section.title}")
        lines.append("")
        if section.skipped:
            lines += [f"Skipped: {section.skipped}", ""]
            continue
        if section.error:
            lines += [f"Failed: {section.error}", ""]
        if section.rows:
            lines.append("| what | tipi | baseline | tipi vs baseline | goal | |")
            lines.append("|---|---|---|---|---|---|")
            for row in section.rows:
                lines.append(f"| {row.what} | {_cell(row.tipi)} | {_cell(row.baseline)} | {_cell(row.compare)} "
                             f"| {_cell(row.goal)} | {verdict(row.met)} |")
            lines.append("")
        for note in section.notes:
            lines.append(f"- {note}")
        if section.notes:
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_results(sections: list[Section], header: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` (and ``latest.*`` copies) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {**header, "sections": [s.as_dict() for s in sections]}
    text_json = json.dumps(data, indent=2, default=str) + "\n"
    text_md = markdown(sections, header)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    for path, text in ((json_path, text_json), (md_path, text_md),
                       (out_dir / "latest.json", text_json), (out_dir / "latest.md", text_md)):
        path.write_text(text, encoding="utf-8")
    return json_path, md_path
