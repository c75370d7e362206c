"""``tipi-runs show RUN``: one run, everything a person needs to understand or resume it.

The config keys that differ are found by comparing the run's stored
``.hydra/config.yaml`` with a fresh composition of tipi's defaults (no
overrides): the keys the run's overrides, experiment and config groups
changed, added or removed. Comparing with tipi's defaults rather than with the
sweep's other jobs works for single runs too, and still names what a whole
sweep changed; the overrides line names what this job set itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tipi.core.lock import holder
from tipi.runs.errors import RunsError
from tipi.runs.multirun import absolute
from tipi.runs.scan import is_run_dir, is_sweep_dir, read_run

MISSING = "<absent>"


def require_run(path: Path) -> Path:
    """``path`` as an absolute run directory, or a :class:`RunsError` saying what it is instead."""
    path = absolute(path)
    if not path.is_dir():
        raise RunsError(f"'{path}' does not exist", hint="`tipi-runs list` shows every run.")
    if is_run_dir(path):
        return path
    if is_sweep_dir(path):
        raise RunsError(
            f"'{path}' is a sweep, not a run",
            hint=f"`tipi-runs multirun status {path}` shows its jobs; `tipi-runs show {path}/<job>` one job.",
        )
    raise RunsError(
        f"'{path}' is neither a run nor a multirun (no run.json or .hydra/ in it)",
        hint="`tipi-runs list` shows every run.",
    )


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b.c": leaf}`` for a nested mapping (lists are leaves)."""
    if not isinstance(node, Mapping):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def default_config() -> dict[str, Any]:
    """tipi's config with no overrides, as Hydra composes it (interpolations left as written)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from tipi.core.config import register_resolvers

    register_resolvers()
    with initialize_config_module(config_module="tipi.conf", version_base="1.3"):
        cfg = compose(config_name="config")
    data = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(data, dict)
    return {str(k): v for k, v in data.items() if k != "hydra"}


def config_diff(run_dir: Path, defaults: Mapping[str, Any] | None = None) -> list[tuple[str, Any, Any]]:
    """``(key, default, this run's)`` for every config key whose value differs from tipi's defaults."""
    from omegaconf import OmegaConf

    stored = run_dir / ".hydra" / "config.yaml"
    if not stored.is_file():
        return []
    mine = flatten(OmegaConf.to_container(OmegaConf.load(stored), resolve=False))
    base = flatten(defaults if defaults is not None else default_config())
    keys = sorted(set(mine) | set(base))
    return [
        (k, base.get(k, MISSING), mine.get(k, MISSING))
        for k in keys
        if base.get(k, MISSING) != mine.get(k, MISSING) and not _filled_in_default(k, base, mine)
    ]


def _filled_in_default(key: str, base: Mapping[str, Any], mine: Mapping[str, Any]) -> bool:
    """A parameter the run's composition filled in from its target's signature, at the signature's default.

    tipi's defaults are composed here without the params hook (``processes.load.force`` is absent there);
    a default filled in is not a difference.
    """
    if key in base or "." not in key:
        return False
    node, _, name = key.rpartition(".")
    target = mine.get(f"{node}._target_")
    if not isinstance(target, str) or name.startswith("_"):
        return False
    from tipi.params import read_target

    info = read_target(target, "process" if node.startswith("processes.") else "permanence")
    param = info.get(name) if info is not None else None
    return param is not None and not param.required and param.default == mine.get(key)


def details(run_dir: Path) -> dict[str, Any]:
    """What ``show`` prints, as data (``--json``)."""
    row = read_run(run_dir)
    record = row["record"] or {}
    try:
        diff: list[tuple[str, Any, Any]] | str = config_diff(run_dir)
    except Exception as exc:  # noqa: BLE001 - a config tree that no longer composes: show the rest
        diff = f"cannot compose tipi's defaults to compare with: {type(exc).__name__}: {exc}"
    sweep = run_dir.parent if is_sweep_dir(run_dir.parent) else None
    return {
        **{k: v for k, v in row.items() if k != "record"},
        "config_diff": diff if isinstance(diff, str) else [{"key": k, "default": d, "run": v} for k, d, v in diff],
        "attempts": record.get("attempts") or [],
        "metrics": record.get("metrics") or {},
        "checkpoints": _files(run_dir / "checkpoints", "*.pt"),
        "figures": _files(run_dir / "figures", "*.png"),
        "resume": f"python -m tipi resume={run_dir}",
        "running_in": owner.describe() if (owner := holder(run_dir)) is not None else None,
        "resubmit": f"tipi-runs multirun resubmit {sweep}" if sweep and (sweep / "manifest.json").is_file() else None,
        "git": record.get("git"),
    }


def _files(folder: Path, pattern: str) -> list[dict[str, Any]]:
    try:
        return [{"path": str(p), "bytes": p.stat().st_size} for p in sorted(folder.glob(pattern))]
    except OSError:
        return []


def render(info: Mapping[str, Any], console: Any) -> None:
    """``details`` for a person (Rich on a terminal, plain text otherwise)."""
    from rich.markup import escape

    def line(label: str, value: Any) -> None:
        console.print(f"[bold]{label:<12}[/] {escape(str(value))}")

    line("run", info["run_dir"])
    line("status", info["status"] + (f"  ({info['error']})" if info["error"] else ""))
    line("objective", f"{info['objective']} ({info['objective_name']}, {info['objective_mode']})")
    line("name / tags", f"{info['name']}  {' '.join(info['tags'])}")
    line("overrides", " ".join(info["overrides"]) or "(none)")
    diff = info["config_diff"]
    console.print("[bold]differs from tipi's defaults[/]" + (":" if diff else ": nothing"))
    for item in [] if isinstance(diff, str) else diff:
        console.print(f"  {escape(item['key'])}: {escape(repr(item['default']))} -> {escape(repr(item['run']))}")
    if isinstance(diff, str):
        console.print(f"  {escape(diff)}")
    console.print(f"[bold]attempts[/] ({len(info['attempts'])}):")
    for n, attempt in enumerate(info["attempts"], 1):
        slurm = attempt.get("slurm") or {}
        job = slurm.get("slurm_job_id", "")
        console.print(
            f"  {n}. {attempt.get('status')}  {attempt.get('start')} -> {attempt.get('end')}  "
            f"host {attempt.get('host')}"
            + (f"  SLURM job {job}" if job else "")
            + (f"  ({escape(str(attempt['reason']))})" if attempt.get("reason") else "")
        )
    if info["metrics"]:
        console.print("[bold]final metrics[/]:")
        for key, value in info["metrics"].items():
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            console.print(f"  {escape(key)} = {escape(shown)}")
    for kind in ("checkpoints", "figures"):
        files = info[kind]
        console.print(f"[bold]{kind}[/]: " + (", ".join(escape(Path(f["path"]).name) for f in files) or "none"))
    line("wandb run", info["wandb_run_id"] or "none")
    if info["running_in"]:  # a live run: resuming it from a second process would be refused
        line("running in", f"{info['running_in']}; wait, or stop it first")
        return
    line("resume with", info["resume"])
    if info["resubmit"]:
        line("or", info["resubmit"])
