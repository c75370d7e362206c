"""How a reproduction's results compare with the original's: every final metric, the best epoch, the weights.

Metrics are compared within ``tolerance``, relative or absolute (``math.isclose``
with both set to it). A checkpoint both runs kept (``checkpoints/last.pt``,
``best.pt``) is loaded with ``weights_only=True`` and its model tensors are
compared one by one: bit-identical, within the tolerance, or different, with
the tensor that differs most named. A PNG overlays both runs' validation curves.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

from tipi.runs.compare import curve_key, read_metrics
from tipi.runs.ending import best_epoch
from tipi.runs.scan import run_settings
from tipi.runs.show import MISSING, flatten
from tipi.runs.summary import read_json, read_yaml

CHECKPOINTS = ("last.pt", "best.pt")  # tipi.permanences.network writes these
FIGURE = "figures/reproduce.png"
REPORT = "reproduce.json"
# keys a reproduction's config differs in by construction: where it runs, not what it computes
PLACEMENT_KEYS = ("hydra.",)


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def within(old: Any, new: Any, tolerance: float) -> bool:
    """Equal, or both numbers within ``tolerance`` (relative or absolute); NaN matches NaN."""
    if _number(old) and _number(new):
        if math.isnan(old) and math.isnan(new):
            return True
        return math.isclose(old, new, rel_tol=tolerance, abs_tol=tolerance)
    return bool(old == new)


def metric_rows(old: Mapping[str, Any], new: Mapping[str, Any], tolerance: float) -> list[dict[str, Any]]:
    """One row per final metric of either run: old, new, difference, within tolerance."""
    rows = []
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key), new.get(key)
        diff = b - a if _number(a) and _number(b) else None
        rows.append({"metric": key, "old": a, "new": b, "difference": diff, "within": within(a, b, tolerance)})
    return rows


def _monitor(config: Mapping[str, Any]) -> tuple[str | None, str]:
    train = (config.get("processes") or {}).get("train") or {}
    return train.get("monitor"), str(train.get("monitor_mode") or "max")


def best_epochs(old_dir: Path, new_dir: Path, tolerance: float) -> dict[str, Any] | None:
    """The best epoch of each run by the training's monitored metric; None when neither trained."""
    config = read_yaml(old_dir / ".hydra" / "config.yaml")
    monitor, mode = _monitor(config if isinstance(config, dict) else {})
    old, new = best_epoch(old_dir, monitor, mode), best_epoch(new_dir, monitor, mode)
    if old is None and new is None:
        return None
    same = old is not None and new is not None and old[0] == new[0] and within(old[1], new[1], tolerance)
    return {"monitor": monitor, "old": old, "new": new, "same": same}


def weight_rows(old_dir: Path, new_dir: Path, tolerance: float) -> list[dict[str, Any]]:
    """For each checkpoint both runs kept: bit-identical, within tolerance or different (largest difference)."""
    pairs = [(name, old_dir / "checkpoints" / name, new_dir / "checkpoints" / name) for name in CHECKPOINTS]
    pairs = [p for p in pairs if p[1].is_file() and p[2].is_file()]
    rows = []
    for name, old_path, new_path in pairs:
        if same_storages(old_path, new_path):  # every tensor's bytes equal: no need to import torch
            rows.append({"checkpoint": name, "verdict": "bit-identical", "tensors": None, "largest": None})
            continue
        import torch

        old = torch.load(old_path, map_location="cpu", weights_only=True).get("model") or {}
        new = torch.load(new_path, map_location="cpu", weights_only=True).get("model") or {}
        rows.append({"checkpoint": name, **_weights(old, new, tolerance)})
    return rows


def same_storages(old: Path, new: Path) -> bool:
    """Whether two checkpoints hold byte-identical tensor storages (``torch.save``'s zip: ``<name>/data/<n>``).

    True means every tensor (weights, optimizer state, RNG) is bit-identical;
    False only that torch must look (another layout, another order, a difference).
    """
    try:
        with zipfile.ZipFile(old) as a, zipfile.ZipFile(new) as b:
            mine = {n.split("/", 1)[1]: n for n in a.namelist() if "/data/" in n}
            theirs = {n.split("/", 1)[1]: n for n in b.namelist() if "/data/" in n}
            if not mine or set(mine) != set(theirs):
                return False
            for key, name in mine.items():
                if a.getinfo(name).file_size != b.getinfo(theirs[key]).file_size:
                    return False
            return all(a.read(name) == b.read(theirs[key]) for key, name in mine.items())
    except (OSError, zipfile.BadZipFile, KeyError):
        return False


def _weights(old: Mapping[str, Any], new: Mapping[str, Any], tolerance: float) -> dict[str, Any]:
    """Compare two state dicts tensor by tensor."""
    import torch

    if set(old) != set(new):
        odd = sorted(set(old) ^ set(new))
        return {"verdict": "different", "tensors": len(old), "largest": None, "why": f"tensors differ: {odd[:3]}"}
    largest: tuple[float, str] = (0.0, "")
    close = True
    for key in old:
        a, b = old[key], new[key]
        if a.shape != b.shape:
            return {"verdict": "different", "tensors": len(old), "largest": None, "why": f"{key}: shape differs"}
        if torch.equal(a, b):
            continue
        a, b = a.double(), b.double()
        diff = float((a - b).abs().max())
        close = close and bool(torch.allclose(a, b, rtol=tolerance, atol=tolerance, equal_nan=True))
        if diff > largest[0] or not largest[1]:
            largest = (diff, key)
    if not largest[1]:
        return {"verdict": "bit-identical", "tensors": len(old), "largest": None}
    verdict = "within tolerance" if close else "different"
    return {"verdict": verdict, "tensors": len(old), "largest": {"tensor": largest[1], "difference": largest[0]}}


def config_rows(old_dir: Path, new_dir: Path) -> list[dict[str, Any]]:
    """The config keys whose stored values differ between the two runs (``.hydra/config.yaml``)."""
    old, new = read_yaml(old_dir / ".hydra" / "config.yaml"), read_yaml(new_dir / ".hydra" / "config.yaml")
    if not isinstance(old, dict) or not isinstance(new, dict):
        return []
    a, b = flatten(old), flatten(new)
    keys = [k for k in [*a, *(k for k in b if k not in a)] if not k.startswith(PLACEMENT_KEYS)]
    return [
        {"key": k, "old": a.get(k, MISSING), "new": b.get(k, MISSING)}
        for k in keys
        if a.get(k, MISSING) != b.get(k, MISSING)
    ]


def figure(old_dir: Path, new_dir: Path, out: Path) -> Path | None:
    """Both runs' validation curves on one axis (``out``); None when neither logged one."""
    old_rows, new_rows = read_metrics(old_dir), read_metrics(new_dir)
    objective = run_settings(old_dir).get("objective")
    key = curve_key(old_rows, objective) or curve_key(new_rows, objective)
    if key is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, rows, style in (("original", old_rows, "-"), ("reproduction", new_rows, "--")):
        points = [(row.get("step", i), row[key]) for i, row in enumerate(rows) if key in row]
        if points:
            ax.plot(*zip(*points, strict=True), style, marker=".", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(f"{key}: {old_dir.name} and its reproduction {new_dir.name}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _results(record: Mapping[str, Any]) -> dict[str, Any]:
    """The run's final metrics, its objective first when it has one."""
    metrics = dict(record.get("metrics") or {})
    if record.get("objective") is not None:
        return {"objective": record["objective"], **metrics}
    return metrics


def compare_runs(old_dir: Path, new_dir: Path, tolerance: float) -> dict[str, Any]:
    """The comparison of two finished runs, as data (``--json``); ``reproduced`` is the verdict."""
    old = read_json(old_dir / "run.json") or {}
    new = read_json(new_dir / "run.json") or {}
    metrics = metric_rows(_results(old), _results(new), tolerance)
    best = best_epochs(old_dir, new_dir, tolerance)
    weights = weight_rows(old_dir, new_dir, tolerance)
    failed = [r["metric"] for r in metrics if not r["within"]]
    failed += ["best epoch"] * (best is not None and not best["same"])
    failed += [f"weights ({w['checkpoint']})" for w in weights if w["verdict"] == "different"]
    if not metrics and not weights:
        failed.append("nothing to compare (neither run recorded a metric, an objective or a checkpoint)")
    return {
        "tolerance": tolerance,
        "metrics": metrics,
        "best_epoch": best,
        "weights": weights,
        "config": config_rows(old_dir, new_dir),
        "differs": failed,
        "reproduced": not failed,
    }
