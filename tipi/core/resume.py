"""``resume=<run dir>``: the stored config, plus the overrides that make sense for a continued run.

The most common reason to resume is to train longer (``processes.train.epochs=30``)
or with a lower learning rate; those overrides, and logging, progress and
device settings, are applied on top of the stored config. Overrides that
would change what the checkpoint means (the model, the data, the seed, which
processes run) are refused, naming the key: they need a fresh run.
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


def _refuse(key: str, why: str) -> ConfigError:
    return ConfigError(
        f"cannot be changed when resuming: {why}",
        key=key,
        hint="Resume without it to continue the run as it was, or start a fresh run with it (drop resume=).",
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


def apply_resume_overrides(
    stored: DictConfig, current: DictConfig, overrides: list[str], choices: dict[str, Any] | None = None
) -> list[str]:
    """Apply to ``stored`` the command-line ``overrides`` a continued run may take; return them.

    Values are copied from ``current`` (the config Hydra composed from this
    command line), so they are typed and resolved exactly as in a fresh run.
    """
    applied: list[str] = []
    for override, parsed in zip(overrides, _parse(overrides), strict=True):
        key = parsed.key_or_group
        if key in _NOT_OVERRIDES or key.startswith("hydra.") or key == "hydra":
            continue
        if _is_fixed(key):
            if choices and key in choices:
                raise _refuse(key, f"the run was started with {key}={choices[key]}")
            raise _refuse(key, f"the run was started with {_shown(OmegaConf.select(stored, key, default=None))}")
        structural = (key.startswith("processes.") and key.count(".") == 1) or parsed.is_delete() or parsed.is_add()
        if structural and not key.startswith(("logger", "progress", "run.")):
            raise _refuse(key, "it changes which processes or parts the run has")
        if parsed.is_delete():
            OmegaConf.update(stored, key, None, force_add=True)
        else:
            value = OmegaConf.select(current, key, default=None)
            if isinstance(value, DictConfig):  # a group chosen anew (logger=wandb): its whole node
                value = copy.deepcopy(value)
            OmegaConf.update(stored, key, value, merge=False, force_add=True)
        applied.append(override)
    return applied


def _shown(value: Any) -> str:
    if isinstance(value, DictConfig):
        target = value.get("_target_")
        return f"_target_ {target}" if target else "a config node"
    return repr(value)
