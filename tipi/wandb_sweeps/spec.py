"""The sweep config: WandB's own sweep format, plus the few keys tipi adds.

``+sweep=<name>`` puts ``conf/sweep/<name>.yaml`` at the top-level ``sweep``
key. Everything in it is WandB's sweep format (``method``, ``metric``,
``parameters``, ``run_cap``, ``name``, ...) except tipi's own keys, which are
taken out before the config goes to WandB:

- ``backend``: ``auto`` (WandB's server when it can be reached, else local),
  ``wandb`` or ``local``.
- ``id``: join this existing WandB sweep (implies ``backend: wandb``).
- ``count``: how many runs this agent runs (WandB's ``wandb.agent(count=)``).
- ``allow``: protected keys (``_target_``, ``hydra.*``) that this sweep may
  set anyway; ``fnmatch`` patterns.
- ``seed``: seed of the local engine's proposals (default: the run's ``seed``).
- ``max_consecutive_failures``: stop after this many failed runs in a row.
- ``agent``: a free label that tells agents apart in a Hydra multirun
  (``-m sweep.id=<id> sweep.agent=0,1,2``: one agent per job / SLURM task).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tipi.core.errors import SweepError
from tipi.wandb_sweeps.overrides import check_parameters

TIPI_KEYS = ("backend", "id", "count", "allow", "seed", "max_consecutive_failures", "agent")
BACKENDS = ("auto", "wandb", "local")
METHODS = ("grid", "random", "bayes")
GOALS = {"maximize": "max", "minimize": "min"}


def import_sweeps() -> ModuleType:
    """WandB's sweep engine (the ``sweeps`` package), imported quietly.

    ``sweeps`` 0.3 still declares its ``SweepRun`` model the pydantic-1 way, and
    pydantic 2 warns about that twice at import; both are harmless (the model
    takes the camelCase field names, which is how tipi fills it).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Valid config keys have changed in V2", category=UserWarning)
        warnings.filterwarnings(
            "ignore", message="Support for class-based `config` is deprecated", category=DeprecationWarning
        )
        try:
            import sweeps
        except ImportError as exc:
            raise SweepError(
                "running a sweep here needs WandB's sweep engine, the 'sweeps' package",
                key="sweep.backend",
                hint="pip install sweeps (it brings scipy and scikit-learn), or run the sweep on WandB's server.",
            ) from exc
    return sweeps


def _schema_violations(config: dict[str, Any]) -> list[str]:
    """WandB's own schema check, where its engine is installed (WandB's server checks again anyway)."""
    try:
        sweeps = import_sweeps()
    except SweepError:
        return []
    return list(sweeps.schema_violations_from_proposed_config(config))


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep config: ``wandb`` is what WandB's engine sees, the rest is tipi's."""

    wandb: dict[str, Any]
    backend: str = "auto"
    id: str | None = None
    count: int | None = None
    allow: tuple[str, ...] = ()
    seed: int | None = None
    max_consecutive_failures: int = 3
    parameter_names: tuple[str, ...] = field(default=())

    @classmethod
    def from_config(cls, node: Any, objective: str | None = None, objective_mode: str | None = None) -> SweepSpec:
        """Check ``cfg.sweep``; ``objective`` (``run.objective``) is the metric when the sweep names none."""
        if isinstance(node, DictConfig):
            node = OmegaConf.to_container(node, resolve=True)
        if not isinstance(node, Mapping):
            raise SweepError(
                f"must be a mapping in WandB's sweep format, got {type(node).__name__}",
                key="sweep",
                hint="Select a sweep file with +sweep=<name> (conf/sweep/<name>.yaml).",
            )
        data = {str(k): v for k, v in node.items()}
        tipi = _tipi_keys({k: data.pop(k) for k in TIPI_KEYS if k in data})
        # ``run_cap: null`` in a YAML file means "no cap": WandB's schema wants the key absent.
        data = {k: v for k, v in data.items() if v is not None}
        names = _check_wandb_part(data, tipi["allow"], objective, objective_mode)
        return cls(wandb=data, parameter_names=tuple(names), **tipi)

    @property
    def method(self) -> str:
        """``grid``, ``random`` or ``bayes``."""
        return str(self.wandb["method"])

    @property
    def name(self) -> str | None:
        """The sweep's ``name``, if it has one."""
        name = self.wandb.get("name")
        return None if name is None else str(name)

    @property
    def parameters(self) -> dict[str, Any]:
        """WandB's ``parameters`` section."""
        return dict(self.wandb["parameters"])

    @property
    def metric_name(self) -> str | None:
        """The metric the sweep optimises (a key of the run's summary metrics)."""
        metric = self.wandb.get("metric")
        return str(metric["name"]) if isinstance(metric, Mapping) and metric.get("name") else None

    @property
    def goal(self) -> str:
        """``max`` or ``min``."""
        metric = self.wandb.get("metric")
        goal = metric.get("goal", "maximize") if isinstance(metric, Mapping) else "maximize"
        return GOALS.get(str(goal), "max")

    @property
    def run_cap(self) -> int | None:
        """WandB's ``run_cap``: no more runs than this in the whole sweep."""
        cap = self.wandb.get("run_cap")
        return None if cap is None else int(cap)


def _tipi_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check tipi's own keys; joining a sweep (``id``) means WandB's server runs it."""
    backend = str(raw.get("backend") or "auto")
    if backend not in BACKENDS:
        raise SweepError(f"unknown backend '{backend}'. Valid: {', '.join(BACKENDS)}", key="sweep.backend")
    allow = raw.get("allow") or ()
    if isinstance(allow, str) or not all(isinstance(a, str) for a in allow):
        raise SweepError("must be a list of keys (fnmatch patterns)", key="sweep.allow")
    count = raw.get("count")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise SweepError(f"must be a positive number of runs, got {count!r}", key="sweep.count")
    max_failures = raw.get("max_consecutive_failures")
    max_failures = 3 if max_failures is None else max_failures
    if not isinstance(max_failures, int) or max_failures < 1:
        raise SweepError(f"must be a positive integer, got {max_failures!r}", key="sweep.max_consecutive_failures")
    sweep_id = str(raw["id"]) if raw.get("id") else None
    if sweep_id and backend == "auto":
        backend = "wandb"
    seed = raw.get("seed")
    return {
        "backend": backend,
        "id": sweep_id,
        "count": count,
        "allow": tuple(allow),
        "seed": None if seed is None else int(seed),
        "max_consecutive_failures": max_failures,
    }


def _check_wandb_part(
    data: dict[str, Any], allow: Sequence[str], objective: str | None, objective_mode: str | None
) -> list[str]:
    """Check WandB's part (filling ``metric`` from the run's objective); return the parameter names."""
    if data.get("method") not in METHODS:
        raise SweepError(f"method must be one of {', '.join(METHODS)}, got {data.get('method')!r}", key="sweep.method")
    parameters = data.get("parameters")
    if not isinstance(parameters, Mapping) or not parameters:
        raise SweepError(
            "needs at least one parameter",
            key="sweep.parameters",
            hint="e.g. parameters: {optimizer.lr: {values: [1e-3, 1e-4]}}",
        )
    names = check_parameters(parameters, allow)
    if "metric" not in data and objective:
        # The sweep optimises what the run reports as its objective.
        data["metric"] = {"name": objective, "goal": "minimize" if objective_mode == "min" else "maximize"}
    if data["method"] == "bayes" and not isinstance(data.get("metric"), Mapping):
        raise SweepError(
            "a bayes sweep needs a metric to optimise",
            key="sweep.metric",
            hint="e.g. metric: {name: val/mean_iou, goal: maximize}",
        )
    violations = _schema_violations(data)
    if violations:
        raise SweepError(
            "is not a valid WandB sweep config: " + "; ".join(violations[:3]),
            key="sweep",
            hint="See https://docs.wandb.ai/models/sweeps/define-sweep-configuration",
        )
    return names
