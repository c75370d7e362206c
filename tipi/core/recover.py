"""An unreadable ``run.json``: keep it aside, rebuild what the run directory still tells.

tipi writes run.json atomically, so a half-written one comes from outside (a
copy or a sync cut short, a hand edit). Resuming such a run must not start a
fresh record over it: the unreadable file is renamed aside (never deleted),
and the record is rebuilt from what else the directory holds:

* ``.hydra/config.yaml`` and ``.hydra/overrides.yaml``: seed, name, objective
  key and the run's own overrides;
* ``.hydra/resume-<time>/``: one earlier attempt each (when it started, with
  which overrides);
* ``metrics.jsonl``: the last value of every metric, hence the objective, and
  the earliest time anything was logged.

How the earlier attempts ended is not known: they are recorded as ``lost``,
with a reason that says so.
"""

from __future__ import annotations

import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tipi.core.record import RunRecord, RunStatus

RESUME_PREFIX = "resume-"
_NOT_METRICS = {"step", "time", "image", "path"}
UNKNOWN_END = "run.json was unreadable: how this attempt ended is not known"


def _yaml(path: Path) -> Any:
    try:
        import yaml

        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - any unreadable file is just missing evidence
        return None


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _own_overrides(overrides: Any) -> list[str]:
    """An attempt's overrides without those that only say where it ran (``resume=``, ``hydra.*``)."""
    if not isinstance(overrides, list):
        return []
    return [str(o) for o in overrides if not str(o).startswith(("resume=", "hydra.", "hydra/"))]


def metrics_summary(path: Path) -> tuple[dict[str, Any], float | None]:
    """The last value of every metric in a ``metrics.jsonl``, and the earliest ``time`` in it.

    Lines that do not parse (a line cut short by a crash) are skipped.
    """
    summary: dict[str, Any] = {}
    first: float | None = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return summary, None
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        when = row.get("time")
        if isinstance(when, (int, float)) and (first is None or when < first):
            first = float(when)
        if "image" in row:
            continue
        summary.update({k: v for k, v in row.items() if k not in _NOT_METRICS})
    return summary, first


def _resume_attempts(hydra_dir: Path, resuming: bool) -> list[dict[str, Any]]:
    """One attempt per ``.hydra/resume-<time>/``; ``resuming``: the newest is this process's own, not earlier."""
    attempts = []
    try:
        subdirs = sorted(p for p in hydra_dir.iterdir() if p.is_dir() and p.name.startswith(RESUME_PREFIX))
    except OSError:
        return []
    for sub in subdirs[:-1] if resuming else subdirs:
        try:  # the name is local time (tipi.core.config._output_subdir)
            start = datetime.strptime(sub.name[len(RESUME_PREFIX) :], "%Y-%m-%d_%H-%M-%S").astimezone(UTC)
        except ValueError:
            continue
        attempt: dict[str, Any] = {"start": start.isoformat(timespec="seconds"), "end": None}
        attempt.update(status=RunStatus.LOST, reason=UNKNOWN_END)
        overrides = _own_overrides(_yaml(sub / "overrides.yaml"))
        if overrides:
            attempt["overrides"] = overrides
        attempts.append(attempt)
    return attempts


def rebuild(record: RunRecord, resuming: bool = False) -> str:
    """Set ``record``'s unreadable run.json aside and rebuild its data; one line saying what was done.

    ``resuming``: this process is a ``resume=`` that Hydra started, so the
    newest ``.hydra/resume-<time>/`` is its own, not an earlier attempt.
    """
    run_dir = record.path.parent
    reason = _why_unreadable(record.path)
    aside = record.set_aside()
    hydra_dir = run_dir / ".hydra"
    config = _yaml(hydra_dir / "config.yaml")
    config = config if isinstance(config, dict) else {}
    run_node = config.get("run")
    run_cfg: dict[str, Any] = run_node if isinstance(run_node, dict) else {}
    summary, first_logged = metrics_summary(run_dir / "metrics.jsonl")
    starts = [t for t in (first_logged, _mtime(hydra_dir / "config.yaml")) if t is not None]
    started = _iso(min(starts)) if starts else None
    first: dict[str, Any] = {"start": started, "end": None, "status": RunStatus.LOST, "reason": UNKNOWN_END}
    attempts = [first, *_resume_attempts(hydra_dir, resuming)]
    data: dict[str, Any] = {"attempts": attempts, "status": RunStatus.LOST, "started": started}
    overrides = _yaml(hydra_dir / "overrides.yaml")
    if isinstance(overrides, list):
        data["overrides"] = [str(o) for o in overrides]
    if isinstance(config.get("seed"), int):
        data["seed"] = config["seed"]
    name = run_cfg.get("name")
    if isinstance(name, str) and "${" not in name:
        data["name"] = name
    if summary:
        data["metrics"] = summary
    objective = summary.get(str(run_cfg.get("objective") or ""))
    if isinstance(objective, (int, float)) and not isinstance(objective, bool) and math.isfinite(objective):
        data["objective"] = float(objective)
    kept = aside.name if aside is not None else "not found any more"
    data["rebuilt"] = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "unreadable": kept, "why": reason}
    record.data = data
    shown = f"{data['objective']:.6g}" if "objective" in data else "none"
    return (
        f"run.json was unreadable ({reason}); kept as {kept}, rebuilt from .hydra/ and metrics.jsonl: "
        f"started {started or '?'}, {len(attempts)} earlier attempt(s), objective {shown}"
    )


def _why_unreadable(path: Path) -> str:
    """What is wrong with ``path``, in a few words (``764 bytes, not valid JSON from byte 380``)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        return exc.strerror or str(exc)
    if not text.strip():
        return "empty"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{len(text)} bytes, not valid JSON from byte {exc.pos}"
    except ValueError:
        return f"{len(text)} bytes, not UTF-8 text"
    return "not a JSON object"


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None
