"""The doctor's output: a Rich table on a terminal, plain text elsewhere, JSON with ``--json``."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import IO, Any

from tipi.doctor.result import CheckResult, Status

STYLES = {Status.OK: "green", Status.WARNING: "yellow", Status.FAILED: "bold red", Status.SKIPPED: "dim"}


def summary(results: Sequence[CheckResult], seconds: float) -> str:
    """``12 ok, 1 warning, 0 failed, 4 skipped in 8.3 s``."""
    counts = Counter(r.status for r in results)
    return ", ".join(f"{counts[s]} {s}" for s in Status) + f" in {seconds:.1f} s"


def as_json(
    results: Sequence[CheckResult], unmet: dict[str, list[CheckResult]], required: Sequence[str], seconds: float
) -> dict[str, Any]:
    """Everything the doctor found, as one JSON-able mapping."""
    return {
        "ok": not unmet,
        "seconds": round(seconds, 3),
        "required": list(required),
        "unmet": {req: [r.name for r in rows] for req, rows in unmet.items()},
        "checks": [r.to_dict() for r in results],
    }


def write_json(data: dict[str, Any], stream: IO[str]) -> None:
    """The JSON report, indented, on ``stream``."""
    stream.write(json.dumps(data, indent=2) + "\n")


def write_plain(results: Sequence[CheckResult], seconds: float, stream: IO[str]) -> None:
    """Aligned text, one row a check and its remedy below it (what a job's log file gets)."""
    width = max((len(r.name) for r in results), default=5)
    for r in results:
        stream.write(f"{r.status.value:<8} {r.name:<{width}}  {r.detail}\n")
        if r.remedy and r.status != Status.OK:
            stream.write(f"{'':<8} {'':<{width}}  -> {r.remedy}\n")
    stream.write(summary(results, seconds) + "\n")


def write_table(results: Sequence[CheckResult], seconds: float, stream: IO[str]) -> None:
    """A Rich table: check, status, detail with the remedy under it."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="tipi doctor", title_justify="left", show_lines=False)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("detail")
    for r in results:
        detail = Text(r.detail)
        if r.remedy and r.status != Status.OK:
            detail.append(f"\n-> {r.remedy}", style="italic")
        table.add_row(r.name, Text(r.status.value, style=STYLES[r.status]), detail)
    console = Console(file=stream)
    console.print(table)
    console.print(summary(results, seconds))


def write_unmet(unmet: dict[str, list[CheckResult]], stream: IO[str]) -> None:
    """One block a requirement not met: the rows that failed it and their remedies."""
    for req, rows in unmet.items():
        stream.write(f"tipi-doctor: --require {req} is not met\n")
        for r in rows:
            stream.write(f"  {r.name}: {r.status.value}: {r.detail}\n")
            if r.remedy:
                stream.write(f"  remedy: {r.remedy}\n")
