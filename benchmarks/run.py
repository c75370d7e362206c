"""The benchmarks' entry point: ``python -m benchmarks [--quick]`` or ``python benchmarks/run.py``.

Runs each measurement (tipi against its baseline, interleaved, in this one
run), prints a Markdown table with every goal marked met or missed, and
writes ``benchmarks/results/<timestamp>.json|.md`` (and ``latest.*``). A full
run (without ``--quick``) also rewrites ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import REPO, RESULTS_DIR
from benchmarks.report import Section, markdown, write_results
from benchmarks.stats import MeasurementError, machine

DOCS_PAGE = REPO / "docs" / "performance.md"


def _sections() -> dict[str, Callable[[bool], Section]]:
    from benchmarks import ddp, memory, multirun, pool, search, slurm, startup, steps, trackers

    return {"startup": startup.run, "steps": steps.run, "multirun": multirun.run, "memory": memory.run,
            "slurm": slurm.run, "ddp": ddp.run, "trackers": trackers.run, "pool": pool.run, "search": search.run}


def update_docs(table: str, extra: list[str] | None = None) -> Path:
    """Rewrite ``docs/performance.md`` with the latest full run's table (and supplementary runs' tables)."""
    from benchmarks.docs_page import render

    DOCS_PAGE.parent.mkdir(parents=True, exist_ok=True)
    DOCS_PAGE.write_text(render(table, extra), encoding="utf-8")
    return DOCS_PAGE


def run_section(name: str, fn: Callable[[bool], Section], quick: bool) -> Section:
    """Run one measurement; a failure becomes the section's error, the other sections still run."""
    print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        section = fn(quick)
    except (MeasurementError, RuntimeError, OSError, ValueError, KeyError) as exc:
        section = Section(name, error=f"{type(exc).__name__}: {exc}")
        traceback.print_exc(file=sys.stderr)
    section.seconds = time.perf_counter() - t0
    print(f"[benchmarks] {name} done in {section.seconds:.0f} s", file=sys.stderr, flush=True)
    return section


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; 0 when every section ran (goals missed or not), 1 when one failed."""
    sections = _sections()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and jobs: under 3 minutes")
    parser.add_argument("--only", nargs="+", choices=sorted(sections), metavar="SECTION",
                        help=f"run only these ({', '.join(sections)})")
    parser.add_argument("--skip", nargs="+", choices=sorted(sections), default=[], metavar="SECTION",
                        help="leave these out")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the JSON and Markdown go")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="torch threads in every measured process (OMP_NUM_THREADS; default: torch's own "
                             "choice, one per core); fewer are less disturbed by other work on a shared machine")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/performance.md")
    parser.add_argument("--docs-from", type=Path, nargs="+", metavar="RESULTS.md",
                        help="measure nothing: rewrite docs/performance.md from a full run's saved table "
                             "(and, after it, supplementary runs' tables)")
    args = parser.parse_args(argv)
    if args.docs_from is not None:
        main_table, *extra = (p.read_text(encoding="utf-8") for p in args.docs_from)
        print(f"[benchmarks] updated {update_docs(main_table, extra)}", file=sys.stderr)
        return 0

    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by every measured process (stats.child_env)
    command = "python -m benchmarks " + shlex.join(sys.argv[1:] if argv is None else argv)
    header = {"command": command.strip(), "date": datetime.now().isoformat(timespec="seconds"),
              "machine": machine(), "mode": "quick" if args.quick else "full",
              "threads": os.environ.get("OMP_NUM_THREADS", "torch default")}
    t0 = time.perf_counter()
    chosen = [n for n in sections if (not args.only or n in args.only) and n not in args.skip]
    # A section asked for by name runs in full; --quick shortens the others.
    results = [run_section(name, sections[name], args.quick and not (args.only and name == "slurm"))
               for name in chosen]
    header["seconds"] = time.perf_counter() - t0
    stem = datetime.now().strftime("%Y-%m-%d_%H-%M-%S") + ("_quick" if args.quick else "")
    json_path, md_path = write_results(results, header, args.out, stem)
    table = markdown(results, header)
    print(table)
    print(f"[benchmarks] wrote {json_path} and {md_path}", file=sys.stderr)
    if not args.quick and not args.only and not args.no_docs:
        print(f"[benchmarks] updated {update_docs(table)}", file=sys.stderr)
    return 1 if any(s.error for s in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
