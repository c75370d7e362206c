"""Every parameter of every process and permanence is a config key: visible, documented, overridable.

A ``_target_`` under ``processes:`` or ``permanences:`` (a ``PipelineProcess``
or ``Permanence`` class, a ``@pipeline_process`` function) brings its
signature's parameters into the config with their defaults, whether or not
its YAML lists them; ``processes.train.lr=0.001`` works without ``+`` in a
single run, a multirun, a WandB sweep and an Optuna search space; a misspelt
parameter is refused before anything runs; ``python -m tipi --help`` lists
them. :func:`install` (called by ``python -m tipi``) puts it in place.
"""

from __future__ import annotations

from tipi.params.help import install_help, params_help
from tipi.params.hook import UnknownParameter, install_overrides
from tipi.params.signature import read_target
from tipi.params.target import Param, TargetInfo

__all__ = ["Param", "TargetInfo", "UnknownParameter", "install", "params_help", "read_target"]


def install() -> None:
    """Signature defaults become config keys, and ``--help`` lists them (idempotent)."""
    install_overrides()
    install_help()
