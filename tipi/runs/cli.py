"""``tipi-runs`` (also ``python -m tipi.runs``): list, show, multirun status / resubmit, compare, reproduce.

A separate entry point, so its words never clash with Hydra's override syntax
(``python -m tipi list`` would be an override). Mistakes (a path that is no
run, nothing to resubmit) are one message and exit code 1, never a traceback.
``reproduce`` runs a recorded run again and exits 3 when the result differs
beyond its tolerance (:mod:`tipi.runs.reproduce`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tipi.core.record import RunStatus

LIST_COLUMNS = ("status", "objective", "duration_s", "started", "name", "tags", "overrides", "run_dir")
CSV_COLUMNS = (*LIST_COLUMNS, "attempts", "error", "wandb_run_id", "slurm_job_id", "objective_mode")
COMMANDS = ("list", "show", "multirun", "sweep", "search", "compare", "reproduce")  # sweep: the old name of multirun


def parser() -> argparse.ArgumentParser:
    """The command line (``list`` is the default command)."""
    main = argparse.ArgumentParser(prog="tipi-runs", description="Every tipi run and sweep on disk.")
    sub = main.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="every run under PATHS (default: outputs/ and multirun/)")
    ls.add_argument("paths", nargs="*", type=Path)
    ls.add_argument("--status", action="append", default=[], help="only these statuses (repeat or comma-separate)")
    ls.add_argument("--tag", action="append", default=[], help="only runs with this tag (repeatable: all of them)")
    ls.add_argument("--since", help="started since: 2026-11-30, 2026-11-30T14:00, or an age: 90m, 6h, 2d")
    ls.add_argument("--glob", action="append", default=[], help="only run directories matching this pattern")
    ls.add_argument("--sort", choices=("start", "objective", "duration"), default="start")
    ls.add_argument("--best", type=int, metavar="N", help="the N best runs by objective (each run's objective_mode)")
    fmt = ls.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON: one object per run, run.json under 'record'")
    fmt.add_argument("--csv", action="store_true", help="CSV on stdout")
    show = sub.add_parser("show", help="one run: overrides, config changes, attempts, metrics, files, resume")
    show.add_argument("run", type=Path)
    show.add_argument("--json", action="store_true")
    multirun = sub.add_parser(
        "multirun", aliases=["sweep"], help="a multirun (python -m tipi -m ...): status, resubmit"
    )
    multirun_sub = multirun.add_subparsers(dest="multirun_command", required=True)
    status = multirun_sub.add_parser("status", help="refresh summary.csv from run.json files and one sacct call")
    status.add_argument("sweep", type=Path, metavar="MULTIRUN")
    status.add_argument("--json", action="store_true")
    again = multirun_sub.add_parser("resubmit", help="relaunch the failed, lost and cancelled jobs, resuming each")
    again.add_argument("sweep", type=Path, metavar="MULTIRUN")
    again.add_argument(
        "--status",
        action="append",
        default=[],
        help="resubmit jobs with these statuses (default: failed, lost, cancelled)",
    )
    search = sub.add_parser("search", help="a search (search=...): its trials, their states and the best")
    search_sub = search.add_subparsers(dest="search_command", required=True)
    search_status = search_sub.add_parser("status", help="every trial: state, last reported value; the best trial")
    search_status.add_argument("sweep", type=Path, metavar="SEARCH")
    search_status.add_argument("--json", action="store_true")
    cmp_ = sub.add_parser("compare", help="a PNG: objective vs each swept parameter, validation curves")
    cmp_.add_argument("sweep", type=Path, metavar="MULTIRUN")
    cmp_.add_argument("--out", type=Path, help="where to write it (default: <sweep>/compare.png)")
    _reproduce_parser(sub)
    return main


def _reproduce_parser(sub: Any) -> None:
    again = sub.add_parser(
        "reproduce",
        help="run a run again from its record (overrides, seed, config tree), as a new run, and compare",
        description="Run RUN again as a new run and compare every final metric, the best epoch and the weights. "
        "Exit status 0 when reproduced within --tolerance, 3 when not.",
    )
    again.add_argument("run", type=Path, metavar="RUN", help="a run directory, or a job directory of a multirun")
    again.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="applied on top (optimizer.lr=0.01)")
    again.add_argument("--at-commit", action="store_true", help="run in a git worktree of the recorded commit")
    again.add_argument("--dry-run", action="store_true", help="print the command, commit and differences only")
    again.add_argument("--tolerance", type=float, help="relative or absolute, for metrics and weights (default: 1e-6)")
    again.add_argument("--json", action="store_true", help="the comparison as JSON on stdout")
    again.add_argument("--config-dir", type=Path, help="the config tree to use instead of the recorded one")
    again.add_argument(
        "--launcher",
        help="run as a one-job multirun on this launcher (slurm, submitit_local; 'recorded': the run's own); "
        "default: a single run here",
    )
    again.add_argument("--out", type=Path, help="the new run's directory (default: outputs/<date>/<time>)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help")):
        args_list.insert(0, "list")
    command_line = parser()
    args, rest = command_line.parse_known_args(args_list)
    if rest and args.command == "reproduce" and not any(r.startswith("-") for r in rest):
        args.overrides += rest  # overrides after an option: reproduce RUN --at-commit optimizer.lr=0.1
    elif rest:
        command_line.error(f"unrecognized arguments: {' '.join(rest)}")
    from tipi.runs.errors import RunsError

    try:
        code = int(COMMAND_FUNCTIONS[args.command](args) or 0)
        sys.stdout.flush()  # here, so a reader that closed the pipe (| head) is noticed inside the try
        return code
    except RunsError as exc:
        _error(exc.message, exc.hint)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tipi-runs | head`: the reader has what it wanted
        # Python would report the broken pipe again when it flushes stdout at exit: point stdout elsewhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _error(message: str, hint: str | None) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"[bold red]Error[/]: {escape(message)}")
    if hint:
        console.print(f"[yellow]{escape(hint)}[/]")


def _split(values: list[str]) -> set[str]:
    return {v.strip() for value in values for v in value.split(",") if v.strip()}


def cmd_list(args: argparse.Namespace) -> int:
    """``tipi-runs list``."""
    from tipi.runs import scan
    from tipi.runs.errors import RunsError

    roots = args.paths or [Path("outputs"), Path("multirun")]
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        raise RunsError(f"'{missing[0]}' does not exist", hint="Pass folders that hold runs (outputs/, multirun/).")
    statuses = _split(args.status)
    unknown = statuses - {str(s) for s in RunStatus}
    if unknown:
        from tipi.core.errors import did_you_mean

        guess = did_you_mean(sorted(unknown)[0], [str(s) for s in RunStatus])
        raise RunsError(
            f"unknown status '{sorted(unknown)[0]}'; statuses: {', '.join(RunStatus)}",
            hint=f"Did you mean '{guess}'?" if guess else None,
        )
    try:
        since = scan.parse_since(args.since) if args.since else None
    except ValueError:
        raise RunsError(
            f"--since '{args.since}' is neither a date nor an age",
            hint="Write 2026-11-30, 2026-11-30T14:00, 90m, 6h or 2d.",
        ) from None
    found = [scan.read_run(path) for path in scan.find_runs(roots)]
    rows = [r for r in found if scan.keep(r, statuses=statuses, tags=_split(args.tag), since=since, globs=args.glob)]
    rows = _sorted(rows, "objective" if args.best else args.sort)
    if args.best:
        rows = [r for r in rows if isinstance(r["objective"], (int, float))][: args.best]
    if args.json:
        json.dump(rows, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    elif args.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**r, "tags": " ".join(r["tags"]), "overrides": " ".join(r["overrides"])} for r in rows)
    elif found and not rows:  # runs there are, none passed the filters: say so, not "no runs"
        print(
            f"{len(found)} run(s) under {', '.join(str(r) for r in roots)}; none matches the filters", file=sys.stderr
        )
    else:
        _print_runs(rows, roots)
    return 0


def _sorted(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    from tipi.runs.scan import objective_key

    if key == "objective":
        return sorted(rows, key=objective_key)
    if key == "duration":
        return sorted(rows, key=lambda r: -(r["duration_s"] or 0.0))
    return sorted(rows, key=lambda r: (r["started"] or "", r["run_dir"]), reverse=True)


def _cells(row: dict[str, Any]) -> dict[str, str]:
    from tipi.runs.summary import number, relative

    return {
        "status": row["status"],
        "objective": number(row["objective"]),
        "duration_s": number(row["duration_s"], ".1f"),
        "started": (row["started"] or "")[:19].replace("T", " "),
        "name": str(row["name"] or ""),
        "tags": " ".join(row["tags"]),
        "overrides": " ".join(row["overrides"]),
        "run_dir": relative(row["run_dir"], Path.cwd()),
    }


FREE_TEXT = ("name", "tags", "overrides")


def _cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, ending in "…" when cut (``tipi-runs show`` has it whole)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_runs(rows: list[dict[str, Any]], roots: list[Path]) -> None:
    if not rows:
        print(f"no runs under {', '.join(str(r) for r in roots)}", file=sys.stderr)
        return
    # Free-text cells (a run with 3000 tags) are cut to a third of the terminal: a row stays a row
    cap = max(20, shutil.get_terminal_size((120, 24)).columns // 3)
    cells = [{k: _cut(v, cap) if k in FREE_TEXT else v for k, v in _cells(row).items()} for row in rows]
    if not sys.stdout.isatty():  # plain, aligned text for pipes and files: no colour, no box, no folding
        widths = {c: max(len(c), *(len(cell[c]) for cell in cells)) for c in LIST_COLUMNS}
        for line in [dict(zip(LIST_COLUMNS, LIST_COLUMNS, strict=True)), *cells]:
            print("  ".join(line[c].ljust(widths[c]) for c in LIST_COLUMNS).rstrip())
        return
    from rich.console import Console
    from rich.markup import escape

    from tipi.runs.summary import print_table, status_markup

    marked = [{**{k: escape(v) for k, v in c.items()}, "status": status_markup(c["status"])} for c in cells]
    print_table(None, LIST_COLUMNS, marked, caption=f"{len(rows)} run(s)", console=Console())


def cmd_show(args: argparse.Namespace) -> int:
    """``tipi-runs show RUN``."""
    from rich.console import Console

    from tipi.runs.show import details, render, require_run

    info = details(require_run(args.run))
    if args.json:
        json.dump(info, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        render(info, Console(highlight=False, soft_wrap=True))
    return 0


def cmd_multirun(args: argparse.Namespace) -> int:
    """``tipi-runs multirun status|resubmit MULTIRUN`` (``sweep``: the old name)."""
    from rich.console import Console

    from tipi.runs.multirun import REDO, counts_line, refresh, require_sweep, resubmit
    from tipi.runs.summary import print_summary

    sweep_dir = require_sweep(args.sweep)
    console = Console(highlight=False, soft_wrap=not sys.stdout.isatty())
    if args.multirun_command == "resubmit":
        statuses = tuple(_split(args.status)) or tuple(str(s) for s in REDO)
        redo, output = resubmit(sweep_dir, statuses)
        console.print(f"resubmitted {len(redo)} job(s): " + ", ".join(str(r["job"]) for r in redo))
        console.print(output.rstrip(), markup=False)
        return 0
    if (sweep_dir / "study.journal").exists():  # a search: its trials, as `tipi-runs search status` shows them
        from tipi.runs.search import status as search_status

        return search_status(sweep_dir, as_json=args.json)
    rows, path = refresh(sweep_dir)
    if args.json:
        json.dump(rows, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    print_summary(rows, sweep_dir, path, console=console)
    note = "" if all(r["scheduler_answered"] for r in rows) else " (the scheduler did not answer: sacct failed)"
    console.print(counts_line(rows) + note, markup=False)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """``tipi-runs search status SEARCH``."""
    from tipi.runs.multirun import require_sweep
    from tipi.runs.search import status

    return status(require_sweep(args.sweep), as_json=args.json)


def cmd_compare(args: argparse.Namespace) -> int:
    """``tipi-runs compare SWEEP``."""
    from tipi.runs.compare import compare
    from tipi.runs.multirun import require_sweep

    sweep_dir = require_sweep(args.sweep)
    print(compare(sweep_dir, args.out))
    if (sweep_dir / "study.journal").exists():  # a search: Optuna's history and intermediate values, up to now
        from tipi.runs.search import load_study
        from tipi.runs.search_plot import write_plots

        print(write_plots(load_study(sweep_dir), sweep_dir / "search.png"))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``tipi-runs reproduce RUN [OVERRIDE ...]``."""
    from tipi.runs.errors import RunsError
    from tipi.runs.reproduce import DEFAULT_TOLERANCE, Options, reproduce

    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if not tolerance >= 0:  # NaN too
        raise RunsError(f"--tolerance must be a number >= 0, got {tolerance}", hint="e.g. --tolerance 1e-4")
    options = Options(
        run=args.run,
        overrides=list(args.overrides),
        at_commit=args.at_commit,
        dry_run=args.dry_run,
        tolerance=tolerance,
        json=args.json,
        config_dir=args.config_dir,
        launcher=args.launcher,
        out=args.out,
    )
    return reproduce(options)


COMMAND_FUNCTIONS = {
    "list": cmd_list,
    "show": cmd_show,
    "multirun": cmd_multirun,
    "search": cmd_search,
    "sweep": cmd_multirun,
    "compare": cmd_compare,
    "reproduce": cmd_reproduce,
}
