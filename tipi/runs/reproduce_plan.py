"""The plan of ``tipi-runs reproduce RUN``: what the run recorded, and the command that runs it again.

The run is recomposed from what it recorded, not replayed from a pickle: its
overrides (``run.json``, else ``.hydra/overrides.yaml``), its seed, the config
tree it was launched with (``--config-dir``, ``--config-name`` and the
``hydra.*`` overrides, from ``.hydra/hydra.yaml``) and the directory it was
launched from. ``python -m tipi`` runs it in a subprocess into a new run
directory; overrides given after RUN apply on top. A job of a multirun runs as
a single run here, unless a launcher is asked for (``--launcher recorded``,
``--launcher slurm`` or ``launcher=slurm``): then it is a one-job multirun on
that launcher. A DDP run is reproduced on as many ranks, or refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tipi.core.record import REPRODUCES_ENV, RunRecord
from tipi.runs.errors import RunsError
from tipi.runs.multirun import absolute, override_value
from tipi.runs.show import require_run
from tipi.runs.summary import job_overrides, read_json, read_yaml

# hydra.* overrides that place, start or choose the original run, not what it computes: the reproduction
# sets its own placement and is one run (a sweeper would start a new search)
PLACEMENT = (
    *("hydra.run.", "hydra.sweep.", "hydra.mode", "hydra.job.num", "hydra.job.id", "hydra.output_subdir"),
    *("hydra.sweeper.", "hydra/sweeper"),
)
MULTIRUN_ONLY = ("hydra.launcher.", "hydra/launcher")  # ...and, for a single run, what only a launcher reads
# groups whose choice starts a search, not a run: a trial runs with its own values, which its overrides hold
SEARCH_GROUPS = {
    "sweep": "a WandB sweep's trial runs as one run; its values are among the overrides",
    "hparams_search": "an Optuna search's trial runs as one run; its sampled values are among the overrides",
}
SINGLE = ("here", "local", "auto", "pool")  # launchers whose job is as well a single run on this machine


@dataclass
class Original:
    """What a run recorded: its directory, run.json, Hydra's node (``.hydra/hydra.yaml``) and its job config."""

    run_dir: Path
    record: dict[str, Any]
    hydra: dict[str, Any]
    config: dict[str, Any]

    @property
    def overrides(self) -> list[str]:
        """The run's own overrides (a resumed run's first ones)."""
        return job_overrides(self.run_dir, self.record)

    @property
    def launcher(self) -> str | None:
        """The ``launcher`` group the run (or its multirun) chose."""
        return (self.hydra.get("runtime", {}).get("choices") or {}).get("launcher")

    def config_sources(self) -> list[dict[str, Any]]:
        """Hydra's ``runtime.config_sources``: where each part of the config tree was read from."""
        return [s for s in self.hydra.get("runtime", {}).get("config_sources") or [] if isinstance(s, dict)]


def load_original(path: Path) -> Original:
    """The run at ``path``; a :class:`RunsError` for a directory that is not a run tipi launched."""
    run_dir = require_run(path)
    record = read_json(run_dir / "run.json")
    if record is None:
        raise RunsError(
            f"'{run_dir}' has no readable run.json: it never started, or its record is damaged",
            hint=f"`tipi-runs show {run_dir}` shows what it holds.",
        )
    saved = read_yaml(run_dir / ".hydra" / "hydra.yaml")
    hydra = saved.get("hydra") if isinstance(saved, dict) else None
    if not isinstance(hydra, dict):
        raise RunsError(
            f"'{run_dir}' has no .hydra/hydra.yaml: it was not started by `python -m tipi` (a programmatic run, "
            "or its .hydra/ was removed), so there is no command line to recompose",
            hint="Run it again the way it was started, with run.deterministic=true to compare exactly.",
        )
    config = read_yaml(run_dir / ".hydra" / "config.yaml")
    return Original(run_dir, record, hydra, config if isinstance(config, dict) else {})


def override_key(override: str) -> str:
    """``optimizer.lr`` of ``optimizer.lr=0.1``, ``+x.y=1``, ``~processes.test``."""
    return override.split("=", 1)[0].lstrip("+~")


def merge(recorded: Sequence[str], extra: Sequence[str]) -> list[str]:
    """``recorded`` with each of ``extra`` replacing the override of the same key, or appended."""
    merged = list(recorded)
    for item in extra:
        at = next((i for i, o in enumerate(merged) if override_key(o) == override_key(item)), None)
        if at is None:
            merged.append(item)
        else:
            merged[at] = item
    return merged


@dataclass
class Plan:
    """The command that reproduces a run, and what the report says about it."""

    original: Original
    extra: list[str]  # given after RUN
    overrides: list[str]  # the new run's own
    hydra_overrides: list[str]
    config_dirs: list[str]
    config_name: str | None
    cwd: Path  # where the new run starts (the original's launch directory)
    out_dir: Path  # the new run's directory
    launcher: str | None = None  # None: a single run here; else a one-job multirun on this launcher
    at_commit: bool = False
    added: list[str] = field(default_factory=list)  # overrides reproduce added (the recorded seed)
    dropped: list[str] = field(default_factory=list)  # recorded overrides left out, and why

    @property
    def run_dir(self) -> Path:
        """The reproduction's run directory (a one-job multirun's job directory)."""
        return self.out_dir / "0" if self.launcher else self.out_dir

    def command(self, where: Callable[[str], str] = str) -> list[str]:
        """``python -m tipi ...``; ``where`` maps a config directory (into a checkout of the recorded commit)."""
        args = [sys.executable, "-m", "tipi"] + (["--multirun"] if self.launcher else [])
        for config_dir in self.config_dirs:
            args += ["--config-dir", where(config_dir)]
        if self.config_name:
            args += ["--config-name", self.config_name]
        args += self.overrides + self.hydra_overrides
        if self.launcher:
            return [*args, f"hydra.sweep.dir={override_value(str(self.out_dir))}", "hydra.sweep.subdir=0"]
        return [*args, f"hydra.run.dir={override_value(str(self.out_dir))}"]

    def seed(self) -> Any:
        """The seed the reproduction runs with."""
        given = [o.split("=", 1)[1] for o in self.overrides if override_key(o) == "seed" and "=" in o]
        return given[-1] if given else self.original.config.get("seed", self.original.record.get("seed"))


def plan(
    original: Original,
    extra: Sequence[str],
    *,
    config_dir: Path | None = None,
    launcher: str | None = None,
    out: Path | None = None,
    at_commit: bool = False,
) -> Plan:
    """Everything needed to run ``original`` again with ``extra`` on top (nothing is run or checked out)."""
    extra = list(extra)
    given = [o.split("=", 1)[1] for o in extra if override_key(o) == "launcher" and "=" in o]
    choice = launcher or (given[-1] if given else None)
    if choice == "recorded":
        choice = original.launcher
    choice = None if choice in (None, *SINGLE) else choice
    if choice is not None:
        _check_launcher(choice, _config_dirs(original, config_dir))
    recorded, dropped = [], []
    resumed = [
        str(o) for a in original.record.get("attempts") or [] if isinstance(a, dict) for o in a.get("overrides") or []
    ]
    for item in merge(original.overrides, resumed):  # a resumed attempt's (epochs=30) made the final results too
        if override_key(item) in SEARCH_GROUPS:
            dropped.append(f"{item} ({SEARCH_GROUPS[override_key(item)]})")
        else:
            recorded.append(item)
    overrides = merge(recorded, extra)
    added = []
    seed = original.record.get("seed")
    if seed is not None and not any(override_key(o) == "seed" for o in overrides):
        added.append(f"seed={seed}")  # the recorded seed, whatever the config's default is now
    if choice:
        overrides = merge(overrides, [f"launcher={choice}", "launcher.wait=true"])
    result = Plan(
        original=original,
        extra=extra,
        overrides=overrides + added,
        hydra_overrides=_hydra_overrides(original, multirun=choice is not None),
        config_dirs=_config_dirs(original, config_dir),
        config_name=_config_name(original),
        cwd=_launch_dir(original),
        out_dir=absolute(out) if out is not None else fresh_dir(Path.cwd() / "outputs"),
        launcher=choice,
        at_commit=at_commit,
        added=added,
        dropped=dropped,
    )
    check_world_size(result)
    return result


def _check_launcher(name: str, config_dirs: Sequence[str]) -> None:
    """``--launcher`` / ``launcher=`` names a ``launcher`` config of tipi's or of the run's config tree."""
    from importlib import resources

    found = {p.name.removesuffix(".yaml") for p in (resources.files("tipi.conf") / "launcher").iterdir()}
    found |= {p.stem for d in config_dirs for p in (Path(d) / "launcher").glob("*.yaml")}
    if name not in found:
        from tipi.core.errors import did_you_mean

        guess = did_you_mean(name, found)
        raise RunsError(
            f"--launcher: unknown launcher '{name}'. Valid: {', '.join(sorted(found))}, recorded",
            hint=f"Did you mean '{guess}'?" if guess else "Leave it out to run a single run here.",
        )


def _hydra_overrides(original: Original, multirun: bool) -> list[str]:
    overrides = original.hydra.get("overrides", {}).get("hydra") or []
    dropped = PLACEMENT + (() if multirun else MULTIRUN_ONLY)
    return [str(o) for o in overrides if not str(o).startswith(dropped)]


def _config_dirs(original: Original, given: Path | None) -> list[str]:
    """The ``--config-dir`` the run was launched with (or ``given``); a :class:`RunsError` if it is gone."""
    if given is not None:
        if not given.is_dir():
            raise RunsError(f"--config-dir '{given}' is not a directory", hint="Pass the folder of your configs.")
        return [str(absolute(given))]
    dirs = [
        str(s.get("path"))
        for s in original.config_sources()
        if s.get("provider") == "command-line" and s.get("schema") == "file"
    ]
    return dirs


def missing_config_tree(plan_: Plan, where: Callable[[str], str] = str) -> None:
    """Refuse a config tree that is no longer there, naming it and how to point at it."""
    for config_dir in plan_.config_dirs:
        if not Path(where(config_dir)).is_dir():
            raise RunsError(
                f"the run's config tree '{where(config_dir)}' (its --config-dir) is gone",
                hint=f"Point at where it is now: tipi-runs reproduce {plan_.original.run_dir} --config-dir <path>"
                + ("" if plan_.at_commit else "; or take the recorded commit's: --at-commit"),
            )
    for source in plan_.original.config_sources():
        path = str(source.get("path"))
        searched = source.get("schema") == "file" and source.get("provider") != "command-line"
        if searched and not Path(where(path)).is_dir():
            raise RunsError(
                f"the run's config search path '{where(path)}' ({source.get('provider')}) is gone",
                hint="Give the folder it moved to after RUN: hydra.searchpath=[file://<path>]",
            )


def _config_name(original: Original) -> str | None:
    name = original.hydra.get("job", {}).get("config_name")
    return str(name) if name and name != "config" else None


def _launch_dir(original: Original) -> Path:
    """Where the run was launched from (relative paths in its overrides are relative to it)."""
    recorded = original.record.get("cwd") or original.hydra.get("runtime", {}).get("cwd")
    return Path(str(recorded)) if recorded else Path.cwd()


def fresh_dir(parent: Path) -> Path:
    """``<parent>/<date>/<time>``, with ``_1``, ``_2``... when a run already took that second."""
    now = datetime.now()
    base = parent / now.strftime("%Y-%m-%d") / now.strftime("%H-%M-%S")
    path, n = base, 0
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}_{n}")
    return path


def _given(overrides: Sequence[str], key: str) -> str | None:
    values = [o.split("=", 1)[1] for o in overrides if override_key(o) == key and "=" in o]
    return values[-1] if values else None


def check_world_size(plan_: Plan) -> None:
    """A DDP run is reproduced on as many ranks as it ran on, or refused naming the key to set.

    The ranks a torchrun or SLURM start gave it are not in its config: a single
    run here would start ``distributed.nproc_per_node`` of them instead.
    """
    recorded = int((plan_.original.record.get("distributed") or {}).get("world_size") or 1)
    if plan_.launcher:  # its launcher starts the ranks as it did (the same config)
        return
    if any(override_key(o).startswith("distributed") for o in plan_.extra):
        return  # asked for on the command line: a change to check, named in the report like any other
    node = plan_.original.config.get("distributed")
    node = node if isinstance(node, dict) else {}
    if _given(plan_.overrides, "distributed") == "none":
        node = {}
    nproc = int(_given(plan_.overrides, "distributed.nproc_per_node") or node.get("nproc_per_node") or 1)
    nnodes = int(_given(plan_.overrides, "distributed.nnodes") or node.get("nnodes") or 1)
    if nnodes > 1:
        raise RunsError(
            f"distributed.nnodes: the run spanned {nnodes} nodes; a single run here starts ranks on this machine only",
            hint="Reproduce it on its launcher: --launcher recorded (or launcher=slurm).",
        )
    if nproc != recorded:
        raise RunsError(
            f"distributed.nproc_per_node: the run ran on {recorded} rank(s); reproduced here it would run on "
            f"{nproc}, and its per-rank batches and sample order would differ",
            hint=f"Set distributed.nproc_per_node={recorded} after RUN"
            + (" (and distributed=ddp)" if not node else "")
            + ", or reproduce it on its launcher: --launcher recorded.",
        )


def environment(plan_: Plan, pythonpath: Sequence[str] = ()) -> dict[str, str]:
    """The new run's environment: this one, plus ``TIPI_REPRODUCES`` and a checkout first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env.pop("TIPI_ORIGINAL_CWD", None)  # a submitit job's launch directory: the new run starts in its own
    env[REPRODUCES_ENV] = str(plan_.original.run_dir)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*pythonpath, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def execute(plan_: Plan, command: list[str], cwd: Path, env: dict[str, str]) -> Path:
    """Run ``command``; its output goes to stderr (stdout is the report). The new run's directory."""
    proc = subprocess.run(command, cwd=cwd, env=env, stdout=sys.stderr, stdin=subprocess.DEVNULL, check=False)
    run_dir = plan_.run_dir
    record = RunRecord.load(run_dir / "run.json")
    if record is not None and not record.get("reproduces"):  # tipi at an older commit does not record it
        RunRecord(run_dir).update(reproduces=str(plan_.original.run_dir))
    if proc.returncode != 0 or record is None or record.get("status") != "succeeded":
        why = (record or {}).get("error") or "no run.json was written"
        raise RunsError(
            f"the reproduction did not succeed (exit {proc.returncode}): {str(why).splitlines()[0]}",
            hint=f"Its directory: {run_dir}; `tipi-runs show {run_dir}` shows it. Command: {' '.join(command)}",
        )
    return run_dir
