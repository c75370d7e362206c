"""Every parameter of every process and permanence is a config key: visible, documented, overridable.

A ``_target_`` under ``processes:`` or ``permanences:`` (a ``PipelineProcess``
or ``Permanence`` class, a ``@pipeline_process`` function) brings its
signature's parameters into the config with their defaults, whether or not
its YAML lists them; ``processes.train.lr=0.001`` works without ``+`` in a
single run, a multirun, a WandB sweep and an Optuna search space; a misspelt
parameter is refused before anything runs; ``python -m tipi --help`` lists
them. :func:`install` (called by ``python -m tipi``) puts it in place.

Hydra 1.3 has no public hook between composing a config and applying the
command line to it, nor for adding to its help, so :func:`install` wraps the
two functions that do (``ConfigLoaderImpl._apply_overrides_to_config`` and
``Hydra.get_help``); the wrappers call the originals and import the rest of
this package on first use, so a command that composes nothing pays nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hydra._internal.hydra import Hydra
    from omegaconf import DictConfig

    from tipi.params.help import params_help
    from tipi.params.hook import UnknownParameter
    from tipi.params.signature import read_target
    from tipi.params.target import Param, TargetInfo

__all__ = ["Param", "TargetInfo", "UnknownParameter", "install", "params_help", "read_target"]

_EXPORTS = {
    "Param": "tipi.params.target",
    "TargetInfo": "tipi.params.target",
    "UnknownParameter": "tipi.params.hook",
    "params_help": "tipi.params.help",
    "read_target": "tipi.params.signature",
}
_MARK = "__tipi_params__"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tipi.params' has no attribute '{name}'")


def install() -> None:
    """Signature defaults become config keys, and ``--help`` lists them (idempotent)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.hydra import Hydra

    current = ConfigLoaderImpl.__dict__["_apply_overrides_to_config"]
    apply = current.__func__ if isinstance(current, staticmethod) else current
    if not getattr(apply, _MARK, False):

        def apply_overrides(overrides: list[Any], cfg: DictConfig) -> None:
            """Hydra's override step, with the signatures' defaults filled in (tipi.params.hook)."""
            from tipi.params.hook import apply_overrides as with_signatures

            with_signatures(apply, overrides, cfg)

        setattr(apply_overrides, _MARK, True)
        ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply_overrides)  # type: ignore[method-assign]  # Hydra has no public hook here (tipi.params explains)

    get_help = Hydra.get_help
    if not getattr(get_help, _MARK, False):

        def get_help_with_params(
            self: Hydra, help_cfg: DictConfig, cfg: DictConfig, args_parser: Any, resolve: bool
        ) -> str:
            """Hydra's help, with every process and permanence and its parameters (tipi.params.help)."""
            from tipi.params.help import with_params_section

            text = get_help(self, help_cfg, cfg, args_parser, resolve)
            return with_params_section(text, str(help_cfg.get("footer") or ""), cfg)

        setattr(get_help_with_params, _MARK, True)
        Hydra.get_help = get_help_with_params  # type: ignore[method-assign]  # Hydra has no public hook for --help text (tipi.params explains)
