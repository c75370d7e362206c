"""``tipi-runs reproduce RUN``: run a recorded run again, as a new run, and say exactly how the result compares.

Before it runs: the command, the commit, and one table of what differs from
the recording (:mod:`tipi.runs.reproduce_env`). Then ``python -m tipi`` runs
it (:mod:`tipi.runs.reproduce_plan`; with ``--at-commit`` in a checkout of the
recorded commit). After: every final metric, the best epoch and the weights of
the checkpoints both runs kept, within ``--tolerance``
(:mod:`tipi.runs.reproduce_compare`); a PNG of both validation curves and
``reproduce.json`` in the new run directory. Exit status 0 when the result is
reproduced within the tolerance, :data:`EXIT_DIFFERS` when it is not.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tipi.atomic import atomic_write_text
from tipi.runs import reproduce_env as env_
from tipi.runs.multirun import override_value
from tipi.runs.reproduce_compare import FIGURE, REPORT, compare_runs, figure
from tipi.runs.reproduce_plan import Plan, environment, execute, load_original, merge, missing_config_tree, plan
from tipi.runs.summary import read_json

EXIT_DIFFERS = 3
CHECKOUT = "<checkout>"  # how a command shows the temporary worktree of --at-commit before it exists
DEFAULT_TOLERANCE = 1e-6  # relative or absolute: float32 results that repeat bit for bit pass, any real change fails


@dataclass
class Options:
    """The command line of ``tipi-runs reproduce``."""

    run: Path
    overrides: list[str] = field(default_factory=list)
    at_commit: bool = False
    dry_run: bool = False
    tolerance: float = DEFAULT_TOLERANCE
    json: bool = False
    config_dir: Path | None = None
    launcher: str | None = None
    out: Path | None = None


def reproduce(options: Options, stdout: TextIO | None = None) -> int:
    """Plan, show, run and compare; the exit status (0 reproduced, :data:`EXIT_DIFFERS` not)."""
    stdout = stdout or sys.stdout
    original = load_original(options.run)
    plan_ = plan(
        original,
        options.overrides,
        config_dir=options.config_dir,
        launcher=options.launcher,
        out=options.out,
        at_commit=options.at_commit,
    )
    repo = env_.recorded_commit(plan_) if options.at_commit else None
    if repo is None:
        missing_config_tree(plan_)
    else:
        _pin_data_root(plan_)
    before = _before(plan_, repo)
    if options.dry_run or not options.json:
        _show_before(before, stdout, dry_run=options.dry_run, as_json=options.json)
    if options.dry_run:
        return 0
    with _checkout(repo, original.run_dir) as where:
        missing_config_tree(plan_, where)
        cwd = Path(where(str(plan_.cwd)))
        command = plan_.command(where)
        pythonpath = _pythonpath(cwd, Path(where(str(repo[0])))) if repo else []
        new_dir = execute(plan_, command, cwd if cwd.is_dir() else Path.cwd(), environment(plan_, pythonpath))
    result = _after(plan_, new_dir, options.tolerance, before)
    if options.json:
        json.dump(result, stdout, indent=1, default=str)
        stdout.write("\n")
    else:
        _show_after(result, stdout)
    return 0 if result["reproduced"] else EXIT_DIFFERS


@contextlib.contextmanager
def _checkout(repo: tuple[Path, str] | None, run_dir: Path) -> Iterator[Callable[[str], str]]:
    """Paths as they are (no ``--at-commit``), or mapped into a worktree of the recorded commit."""
    if repo is None:
        yield str
        return
    root, commit = repo
    diff = run_dir / env_.DIFF_FILE
    with env_.worktree(root, commit, diff if diff.is_file() else None) as checkout:
        yield env_.mapper(root, checkout)


def _pythonpath(cwd: Path, checkout: Path) -> list[str]:
    """The checkout's code before any installed copy: its launch directory, its root, its ``src/``."""
    paths = [cwd, checkout] + [checkout / "src"] * (checkout / "src").is_dir()
    return list(dict.fromkeys(str(p) for p in paths))


def _pin_data_root(plan_: Plan) -> None:
    """In a checkout, a relative ``data.root`` would point into it: the recorded folder, absolute, instead."""
    data = plan_.original.config.get("data")
    recorded = (plan_.original.record.get("data") or {}).get("root")
    root = data.get("root") if isinstance(data, dict) else None
    if isinstance(root, str) and recorded and not Path(root).expanduser().is_absolute():
        pinned = f"data.root={override_value(str(recorded))}"
        plan_.overrides = merge(plan_.overrides, [pinned])
        plan_.added.append(pinned)


def _before(plan_: Plan, repo: tuple[Path, str] | None) -> dict[str, Any]:
    record = plan_.original.record
    recorded = env_.git_text(record.get("git"))[0]
    if repo:
        where = env_.mapper(repo[0], CHECKOUT)
        commit = f"{repo[1]} (the recorded commit, in a temporary git worktree)"
        rows = env_.environment_rows(record, env_.here(plan_, commit)) + env_.run_rows(plan_, where)
        shown = f"{commit}; {CHECKOUT} stands for it"
    else:
        where, now = str, env_.git_state_at(str(plan_.cwd)).get("commit") if plan_.cwd.is_dir() else None
        rows = env_.environment_rows(record, env_.here(plan_)) + env_.run_rows(plan_)
        shown = f"{recorded or 'none'} recorded; the code that runs is {plan_.cwd} as it is now" + (
            f" (commit {now})" if now and now != recorded else ""
        )
    return {
        "original": str(plan_.original.run_dir),
        "reproduction": str(plan_.run_dir),
        "command": plan_.command(where),
        "cwd": where(str(plan_.cwd)),
        "commit_note": shown,
        "launcher": plan_.launcher or "a single run here",
        "commit": repo[1] if repo else recorded,
        "at_commit": repo is not None,
        "overrides_added": plan_.extra,
        "added_by_reproduce": plan_.added,
        "left_out": plan_.dropped,
        "differences": rows,
        "warnings": env_.warnings(plan_),
        "deterministic": env_.determinism_note(record),
    }


def _after(plan_: Plan, new_dir: Path, tolerance: float, before: Mapping[str, Any]) -> dict[str, Any]:
    result = compare_runs(plan_.original.run_dir, new_dir, tolerance)
    new_record = read_json(new_dir / "run.json") or {}
    result["environment"] = env_.environment_rows(plan_.original.record, new_record)
    drawn = figure(plan_.original.run_dir, new_dir, new_dir / FIGURE)
    result = {**before, "reproduction": str(new_dir), **result, "figure": str(drawn) if drawn else None}
    atomic_write_text(new_dir / REPORT, json.dumps(result, indent=1, default=str) + "\n")
    return result


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], headers: Sequence[str]) -> list[str]:
    cells = [list(headers)] + [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in cells]


def _show_before(before: Mapping[str, Any], out: TextIO, dry_run: bool, as_json: bool) -> None:
    if as_json:  # --dry-run --json: the plan alone
        json.dump(before, out, indent=1, default=str)
        out.write("\n")
        return
    lines = [
        f"reproduce {before['original']}" + ("  (dry run: nothing is run)" if dry_run else ""),
        f"  command: {' '.join(before['command'])}",
        f"  in:      {before['cwd']}",
        f"  commit:  {before['commit_note']}",
        f"  as:      {before['launcher']}, into {before['reproduction']}",
    ]
    if before["overrides_added"]:
        lines.append(f"  overrides added: {' '.join(before['overrides_added'])}")
    if before["added_by_reproduce"]:
        lines.append(f"  added by reproduce: {' '.join(before['added_by_reproduce'])}")
    lines += [f"  left out: {item}" for item in before["left_out"]]
    lines.append("what differs from the recording:")
    rows = [{**r, "mark": "" if r["same"] else "differs" if r["same"] is False else "?"} for r in before["differences"]]
    lines += _table(rows, ("what", "recorded", "now", "mark"), ("", "recorded", "now", ""))
    lines += [f"warning: {w}" for w in before["warnings"]]
    lines.append(f"note: {before['deterministic']}")
    out.write("\n".join(lines) + "\n")
    out.flush()


def _number(value: Any, fmt: str = ".8g") -> str:
    return format(value, fmt) if isinstance(value, float) else "" if value is None else str(value)


def _show_after(result: Mapping[str, Any], out: TextIO) -> None:
    tol = result["tolerance"]
    rows = [
        {
            "metric": r["metric"],
            "old": _number(r["old"]),
            "new": _number(r["new"]),
            "difference": _number(r["difference"], ".3g"),
            "within": "yes" if r["within"] else "NO",
        }
        for r in result["metrics"]
    ]
    lines = [f"compared with the original (tolerance {tol:g}, relative or absolute):"]
    columns = ("metric", "old", "new", "difference", "within")
    lines += _table(rows, columns, ("metric", "original", "reproduction", "difference", f"within {tol:g}"))
    best = result["best_epoch"]
    if best is not None:
        old, new = best["old"] or ("-", None), best["new"] or ("-", None)
        lines.append(
            f"best epoch ({best['monitor']}): {old[0]} ({_number(old[1], '.6g')}) and {new[0]} "
            f"({_number(new[1], '.6g')}): {'same' if best['same'] else 'DIFFERENT'}"
        )
    for w in result["weights"]:
        largest = w["largest"]
        detail = f"; largest difference {largest['difference']:.3g} in {largest['tensor']}" if largest else ""
        count = "every stored tensor" if w["tensors"] is None else f"{w['tensors']} model tensors"
        why = f"; {w['why']}" if w.get("why") else ""
        lines.append(f"weights {w['checkpoint']}: {w['verdict']} ({count}{detail}{why})")
    changed = result["config"]
    lines.append(
        "config: as recorded"
        if not changed
        else "config differs: " + ", ".join(f"{c['key']} {c['old']!r} -> {c['new']!r}" for c in changed)
    )
    moved = [f"{r['what']} {r['recorded']} -> {r['now']}" for r in result["environment"] if r["same"] is False]
    lines.append("environment: as recorded" if not moved else "environment differs: " + "; ".join(moved))
    if result["figure"]:
        lines.append(f"figure: {result['figure']}")
    lines.append(_verdict(result))
    out.write("\n".join(lines) + "\n")


def _verdict(result: Mapping[str, Any]) -> str:
    tol = result["tolerance"]
    if result["reproduced"]:
        return f"reproduced within {tol:g}: {result['reproduction']} reproduces {result['original']}"
    added = f" (overrides added: {' '.join(result['overrides_added'])})" if result["overrides_added"] else ""
    return f"NOT reproduced within {tol:g}: {', '.join(result['differs'])} differ{added}"
