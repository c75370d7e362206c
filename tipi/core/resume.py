"""``resume=<run dir>``: the stored config, plus the overrides that make sense for a continued run.

The most common reason to resume is to train longer (``processes.train.epochs=30``)
or with a lower learning rate; those overrides, and logging, progress and
device settings, are applied on top of the stored config. Overrides that
would change what the checkpoint means (the model, the data, the seed, which
processes run) are refused, naming the key: they need a fresh run.

An override that asks for what the run already has is no change: the
original command with ``resume=`` added (``+experiment=seg debug=fast seed=7
resume=<dir>``) continues the run. Every real change is named in one
refusal, with the run's value and the command's.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tipi.core.errors import ConfigError

# Top-level keys whose change makes the checkpoint mean something else.
FIXED_KEYS = (
    "model",
    "data",
    "seed",
    "pipeline",
    "experiment",
    "debug",
    "permanences.network.model",
    "permanences.data",
    "distributed",
)
_NOT_OVERRIDES = ("resume",)


def load_stored_config(run_dir: Path) -> DictConfig:
    """The config a run directory was started with (``.hydra/config.yaml``)."""
    stored = run_dir / ".hydra" / "config.yaml"
    if not run_dir.is_dir():
        raise ConfigError(
            f"'{run_dir}' is not a directory", key="resume", hint="Pass a run directory such as outputs/<date>/<time>."
        )
    if not stored.is_file():
        raise ConfigError(
            f"'{run_dir}' holds no tipi run (no .hydra/config.yaml)",
            key="resume",
            hint="Pass a directory that a tipi run created.",
        )
    cfg = OmegaConf.load(stored)
    assert isinstance(cfg, DictConfig)
    return cfg


def _parse(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(overrides)


def _is_fixed(key: str) -> bool:
    return any(key == fixed or key.startswith(f"{fixed}.") for fixed in FIXED_KEYS)


def _refuse(changes: list[tuple[str, str, str]]) -> ConfigError:
    """One refusal naming every ``(key, the run's, this command's)`` change."""
    keys = ", ".join(dict.fromkeys(key for key, _, _ in changes))
    started = ", ".join(old for _, old, _ in changes)
    asked = ", ".join(new for _, _, new in changes)
    return ConfigError(
        f"cannot be changed when resuming: the run was started with {started}; this command sets {asked}",
        key=keys,
        hint="Resume without them (or with the values the run was started with) to continue the run as it was, "
        "or start a fresh run with them (drop resume=).",
    )


def stored_choices(run_dir: Path) -> dict[str, Any]:
    """The config groups a run was composed from (``model: unet_small``), from its ``.hydra/hydra.yaml``."""
    try:
        import yaml

        hydra_cfg = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text(encoding="utf-8"))
        choices = hydra_cfg["hydra"]["runtime"]["choices"]
    except (OSError, KeyError, TypeError, ValueError):
        return {}
    return dict(choices) if isinstance(choices, dict) else {}


_ABSENT = object()


def _raw(tree: Any, key: str) -> Any:
    """The value at dotted ``key`` in a plain container tree (interpolations as written), or ``_ABSENT``."""
    node = tree
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _ABSENT
    return node


def _plain(cfg: DictConfig) -> Any:
    return OmegaConf.to_container(cfg, resolve=False)


def _as_set(old: Any, key: str) -> str:
    """``key=value`` as the run has it (``(absent)`` when it has no such key)."""
    if old is _ABSENT or old is None:
        return f"{key} (absent)"
    if isinstance(old, dict):
        target = old.get("_target_")
        return f"{key}=<{target}>" if target else f"{key}=<a config node>"
    return f"{key}={old}"


def apply_resume_overrides(
    stored: DictConfig, current: DictConfig, overrides: list[str], choices: dict[str, Any] | None = None
) -> list[str]:
    """Apply to ``stored`` the command-line ``overrides`` a continued run may take; return those that change it.

    An override that asks for what the run already has (the config group
    option it was composed with, the value it has, a step it does not have
    removed) is accepted and changes nothing. Of the others, those that
    would change what the checkpoint means are all refused in one
    :class:`ConfigError`; the rest are applied, their values copied from
    ``current`` (the config Hydra composed from this command line), so they
    are typed and resolved exactly as in a fresh run.
    """
    choices = choices or {}
    stored_tree, current_tree = _plain(stored), _plain(current)
    applied: list[str] = []
    refused: list[tuple[str, str, str]] = []
    for override, parsed in zip(overrides, _parse(overrides), strict=True):
        key = parsed.key_or_group
        if key in _NOT_OVERRIDES or key.startswith("hydra.") or key == "hydra":
            continue
        group = key in choices
        if group:
            old: Any = choices[key]
            same = not parsed.is_delete() and _option(parsed.value()) == _option(old)
        else:
            old = _raw(stored_tree, key)
            new = _ABSENT if parsed.is_delete() else _raw(current_tree, key)
            same = old == new or (parsed.is_delete() and old is None)
        if same:
            continue
        shown_old = (f"{key}={old}" if old is not None else f"{key} (none)") if group else _as_set(old, key)
        if _is_fixed(key):
            refused.append((key, shown_old, override))
            continue
        structural = (key.startswith("processes.") and key.count(".") == 1) or parsed.is_delete() or parsed.is_add()
        if structural and not key.startswith(("logger", "progress", "run.")):
            refused.append((key, shown_old, override))
            continue
        if refused:
            continue  # nothing is applied when something is refused
        if parsed.is_delete():
            OmegaConf.update(stored, key, None, force_add=True)
        else:
            value = OmegaConf.select(current, key, default=None)
            if isinstance(value, DictConfig):  # a group chosen anew (logger=wandb): its whole node
                value = copy.deepcopy(value)
            OmegaConf.update(stored, key, value, merge=False, force_add=True)
        applied.append(override)
    if refused:
        raise _refuse(refused)
    return applied


def _option(value: Any) -> Any:
    """A config-group option as comparable data (``[a, b]`` and ``a`` as Hydra writes them)."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return None if value is None else str(value)
