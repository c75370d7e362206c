"""``tipi-runs search status SWEEP``: the trials of a search (``search=...``), read from its study.

One row per trial: its state (complete, pruned, running, waiting, failed;
a trial whose worker died and that was given back says so), its parameters,
the last step and value it reported, its value, its run directory. Then the
counts, the best trial and the command that runs it again. The study is read
where the search keeps it: ``<sweep>/study.journal``, or the storage its
``multirun.yaml`` names.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from pathlib import Path
from typing import Any

from tipi.runs.errors import RunsError
from tipi.runs.summary import read_yaml

JOURNAL = "study.journal"


def _storage_and_name(sweep_dir: Path) -> tuple[Any, str | None]:
    saved = read_yaml(sweep_dir / "multirun.yaml") or {}
    search = saved.get("search") or {}
    sweeper = (saved.get("hydra") or {}).get("sweeper") or {}
    storage = search.get("storage") or sweeper.get("storage")
    name = search.get("study_name") or sweeper.get("study_name")
    journal = sweep_dir / JOURNAL
    if not storage and not journal.exists():
        raise RunsError(
            f"'{sweep_dir}' holds no search: no {JOURNAL} and no storage in its multirun.yaml",
            hint="A search is started with search=... (or +hparams_search=...); "
            "`tipi-runs multirun status` shows any other multirun.",
        )
    if not storage or str(storage).startswith(("journal://", "file://")):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = Path(str(storage).split("://", 1)[1]) if storage else journal
        return JournalStorage(JournalFileBackend(str(path))), name
    return str(storage), name


def load_study(sweep_dir: Path) -> Any:
    """The study of the search in ``sweep_dir``; a ``RunsError`` when there is none."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, name = _storage_and_name(sweep_dir)
    names = optuna.get_all_study_names(storage)
    if not names:
        raise RunsError(f"the study of '{sweep_dir}' holds no trial yet", hint="Its workers may not have started.")
    return optuna.load_study(study_name=name if name in names else names[-1], storage=storage)


def trial_rows(study: Any, sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per trial."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        steps = sorted(trial.intermediate_values.items())
        state = trial.state.name.lower()
        if trial.user_attrs.get("gave_back"):
            state = "given back"
        rows.append(
            {
                "trial": trial.number,
                "state": state,
                "params": dict(trial.params),
                "last_step": steps[-1][0] if steps else None,
                "last_value": steps[-1][1] if steps else None,
                "value": trial.value if trial.values else None,
                "retry_of": trial.user_attrs.get("retry_of"),
                "run_dir": trial.user_attrs.get("run_dir") or str(sweep_dir / str(trial.number)),
            }
        )
    return rows


def best_command(study: Any) -> str | None:
    """The command that runs the best trial again (its run's own overrides)."""
    try:
        best = study.best_trial
    except ValueError:  # no trial completed
        return None
    run_dir = Path(best.user_attrs.get("run_dir") or "")
    overrides = read_yaml(run_dir / ".hydra" / "overrides.yaml") or [f"{k}={v}" for k, v in best.params.items()]
    # what made it a search is not part of the run
    overrides = [o for o in overrides if not str(o).lstrip("+~").startswith(("hparams_search=", "search=", "search."))]
    return "python -m tipi " + " ".join(shlex.quote(str(o)) for o in overrides)


def status(sweep_dir: Path, as_json: bool = False) -> int:
    """Print the search's trials, counts and best trial; 0."""
    study = load_study(sweep_dir)
    rows = trial_rows(study, sweep_dir)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    best = None
    with contextlib.suppress(ValueError):  # no trial completed yet
        best = {"trial": study.best_trial.number, "value": study.best_value, "params": study.best_params}
    command = best_command(study)
    if as_json:
        print(
            json.dumps(
                {
                    "study": study.study_name,
                    "direction": study.direction.name.lower(),
                    "counts": counts,
                    "best": best,
                    "command": command,
                    "trials": rows,
                },
                indent=2,
                default=str,
            )
        )
        return 0
    _print(study, rows, counts, best, command, sweep_dir)
    return 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _print(
    study: Any,
    rows: list[dict[str, Any]],
    counts: dict[str, int],
    best: dict[str, Any] | None,
    command: str | None,
    sweep_dir: Path,
) -> None:
    from rich.console import Console
    from rich.markup import escape

    from tipi.runs.summary import print_table, relative

    console = Console(highlight=False, soft_wrap=True)
    styles = {"complete": "green", "pruned": "cyan", "running": "yellow", "waiting": "yellow"}
    cells = [
        {
            "trial": str(r["trial"]),
            "state": f"[{styles.get(r['state'], 'red')}]{r['state']}[/]",
            "params": escape(" ".join(f"{k}={_fmt(v)}" for k, v in r["params"].items())),
            "step": _fmt(r["last_step"]),
            "reported": _fmt(r["last_value"]),
            "value": _fmt(r["value"]),
            "run_dir": escape(relative(str(r["run_dir"]), sweep_dir)),
        }
        for r in rows
    ]
    columns = ["trial", "state", "params", "step", "reported", "value", "run_dir"]
    print_table(f"search {study.study_name} ({study.direction.name.lower()})", columns, cells, console=console)
    order = ("complete", "pruned", "running", "waiting", "fail", "given back")
    console.print(", ".join(f"{counts[s]} {s}" for s in order if s in counts) or "no trials")
    if best is not None:
        params = " ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
        console.print(f"best: trial {best['trial']}, value {best['value']:.6g}: {escape(params)}")
    if command:
        console.print(f"run it again: {escape(command)}")
