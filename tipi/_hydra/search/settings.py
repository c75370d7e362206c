"""What a search is asked to do, from the ``search`` group (or an Optuna-sweeper file), checked before anything runs.

Two spellings give the same :class:`SearchSettings`: tipi's ``search`` node
(``search.sampler=tpe search.pruner=asha search.trials=48``) and
hydra-optuna-sweeper's ``hydra.sweeper`` keys (``n_trials``, ``direction``,
``sampler: {_target_: optuna.samplers.TPESampler, seed: 1}``, ``params``,
``n_jobs``), so an existing ``hparams_search`` file runs as it is. Every
mistake is one ``ConfigError`` naming the key, before any worker starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tipi.core.errors import ConfigError

SAMPLERS = ("tpe", "random", "grid", "cmaes", "qmc")
PRUNERS = ("asha", "hyperband", "median", "none")
STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql", "journal", "file")
JOURNAL = "study.journal"


@dataclass
class SearchSettings:
    """A checked search: the space, how trials are sampled and pruned, how many, where the study lives."""

    space: dict[str, Any]
    fixed: list[str]
    direction: str  # "maximize" or "minimize"
    trials: int
    sampler: Any  # a name of SAMPLERS, or an Optuna-sweeper sampler node (with _target_)
    seed: int | None
    pruner: Any  # a name of PRUNERS, or a node with _target_
    storage: str  # an RDB URL or the journal file's path
    study_name: str
    workers: int | None
    min_epochs: int = 1
    max_epochs: int = 1
    reduction_factor: int = 3
    extra: dict[str, Any] = field(default_factory=dict)

    def pruning(self) -> bool:
        """Whether trials may be stopped early."""
        return self.pruner not in (None, "none")


def _select(node: Any, key: str, default: Any = None) -> Any:
    value = OmegaConf.select(node, key, default=default) if node is not None else default
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _positive_int(value: Any, key: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{value!r} is not valid; {what}: a whole number of at least 1", key=key)
    return value


def read_settings(config: DictConfig, sweeper: dict[str, Any], arguments: list[str]) -> SearchSettings:
    """The search of ``config`` (its ``search`` node) and the sweeper's keys, with the command line's sweeps."""
    from tipi._hydra.search.space import parse_space

    node = OmegaConf.select(config, "search")
    params = _flatten(dict(sweeper.get("params") or {}))
    params.update(_flatten(_select(node, "params", {}) or {}))
    key_prefix = "search.params" if _select(node, "params") else "hydra.sweeper.params"
    space, fixed = parse_space(params, key_prefix)
    cli_space, cli_fixed = parse_space(_command_line_space(arguments), "the command line")
    space.update(cli_space)
    fixed += cli_fixed
    if not space:
        raise ConfigError(
            "nothing to search: the search space is empty",
            key="search.params",
            hint="Name the keys and their ranges, e.g. search.params={optimizer.lr:'tag(log, interval(1e-4, 1e-2))'}"
            ", or give them on the command line: 'optimizer.lr=tag(log, interval(1e-4, 1e-2))'.",
        )
    check_space_keys(config, space)
    settings = SearchSettings(
        space=space,
        fixed=fixed,
        direction=_direction(config, node, sweeper),
        trials=_positive_int(_select(node, "trials", sweeper.get("n_trials", 20)), _trials_key(node), "trials"),
        sampler=_sampler(node, sweeper),
        seed=_select(node, "seed", None),
        pruner=_pruner(config, node, sweeper),
        storage=_storage(config, node, sweeper),
        study_name=str(_select(node, "study_name", None) or sweeper.get("study_name") or "tipi"),
        workers=_workers(config, sweeper),
        min_epochs=_positive_int(_select(node, "min_epochs", 1), "search.min_epochs", "epochs before pruning"),
        max_epochs=int(OmegaConf.select(config, "processes.train.epochs", default=1) or 1),
        reduction_factor=_positive_int(
            _select(node, "reduction_factor", 3), "search.reduction_factor", "the pruner's reduction factor"
        ),
    )
    return settings


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{optimizer: {lr: ...}}`` (``+search.params.optimizer.lr=...`` on a command line) as ``{optimizer.lr: ...}``."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _command_line_space(arguments: list[str]) -> dict[str, str]:
    """``key: value`` of the command line's overrides; ``search.params.KEY=...`` is ``KEY`` of the space."""
    space = {}
    for argument in arguments:
        if "=" not in argument:
            continue
        key, value = argument.split("=", 1)
        bare = key.lstrip("+")
        space[bare.removeprefix("search.params.") if bare.startswith("search.params.") else key] = value
    return space


def _trials_key(node: Any) -> str:
    return "search.trials" if node is not None else "hydra.sweeper.n_trials"


def _direction(config: DictConfig, node: Any, sweeper: dict[str, Any]) -> str:
    given = _select(node, "direction", None) or sweeper.get("direction")
    if given is None:
        mode = str(OmegaConf.select(config, "run.objective_mode", default="max"))
        given = "maximize" if mode == "max" else "minimize"
    given = {"max": "maximize", "min": "minimize"}.get(str(given), str(given))
    if given not in ("maximize", "minimize"):
        raise ConfigError(
            f"'{given}' is not a direction. Valid: maximize, minimize (or max, min)", key="search.direction"
        )
    return given


def _sampler(node: Any, sweeper: dict[str, Any]) -> Any:
    name = _select(node, "sampler", None)
    if name is None:
        return sweeper.get("sampler") or "tpe"
    if isinstance(name, dict):
        return name
    if str(name) not in SAMPLERS:
        raise ConfigError(f"'{name}' is not a sampler. Valid: {', '.join(SAMPLERS)}", key="search.sampler")
    return str(name)


def _pruner(config: DictConfig, node: Any, sweeper: dict[str, Any]) -> Any:
    name = _select(node, "pruner", None)
    if name is None:
        name = sweeper.get("pruner") or "none"
    if not isinstance(name, dict) and str(name) not in PRUNERS:
        raise ConfigError(f"'{name}' is not a pruner. Valid: {', '.join(PRUNERS)}", key="search.pruner")
    if name != "none" and not OmegaConf.select(config, "processes.train.monitor", default=None):
        raise ConfigError(
            "a pruner compares the trials' metric at every validation, and processes.train.monitor is unset "
            "(or the pipeline has no training process)",
            key="search.pruner",
            hint="Set processes.train.monitor=val/mean_iou (a validation metric), or search.pruner=none.",
        )
    return name if isinstance(name, dict) else str(name)


def _storage(config: DictConfig, node: Any, sweeper: dict[str, Any]) -> str:
    given = _select(node, "storage", None) or sweeper.get("storage")
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    if not given:
        return str(sweep_dir / JOURNAL)
    scheme = str(given).split(":", 1)[0].split("+", 1)[0] if "://" in str(given) else ""
    if scheme not in STORAGE_SCHEMES:
        raise ConfigError(
            f"'{given}' is not a storage tipi can open: the scheme '{scheme or '(none)'}' is none of "
            f"{', '.join(STORAGE_SCHEMES)}",
            key="search.storage",
            hint="null keeps the study in a journal file in the sweep directory; sqlite:///study.db, "
            "postgresql://..., or journal:///path/to/study.journal name another.",
        )
    if scheme in ("journal", "file"):
        return str(Path(str(given).split("://", 1)[1]).absolute())
    return str(given)


def _workers(config: DictConfig, sweeper: dict[str, Any]) -> int | None:
    value = OmegaConf.select(config, "launcher.workers", default=None)
    if value is None:
        value = sweeper.get("n_jobs")
    if value is None:
        return None
    return _positive_int(value, "launcher.workers", "workers")


def check_space_keys(config: DictConfig, space: dict[str, Any]) -> None:
    """Every searched key names a key of the config or a config group."""
    groups = set((OmegaConf.select(config, "hydra.runtime.choices", default=None) or {}).keys())
    for key in space:
        if key.lstrip("+~") in groups:
            continue
        if OmegaConf.select(config, key.lstrip("+~"), default="\0missing") == "\0missing" and not key.startswith("+"):
            raise ConfigError(
                f"'{key}' is not a key of the config, so a trial could not set it",
                key=f"search.params.{key}",
                hint="Check the spelling against `python -m tipi --cfg job`; add a new key with a leading '+'.",
            )
