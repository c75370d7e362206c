"""Every parameter of every process and permanence is a config key: read from its signature.

A ``_target_`` under ``processes:`` or ``permanences:`` (a ``PipelineProcess``
or ``Permanence`` class, a ``@pipeline_process`` function) brings its
signature's parameters into the config with their defaults, whether or not
its YAML lists them; ``processes.train.lr=0.001`` works without ``+``; a
misspelt parameter is refused before anything runs; ``python -m tipi --help``
lists them.

This package reads signatures (:func:`read_target`, from the source where it
can, so ``--help`` imports no torch). Putting the parameters into Hydra's
composition and into ``--help`` is Hydra glue and lives in the seam,
:mod:`tipi._hydra` (``params_hook`` and ``help``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tipi.params.signature import read_target
    from tipi.params.target import Param, TargetInfo

__all__ = ["Param", "TargetInfo", "read_target"]

_EXPORTS = {
    "Param": "tipi.params.target",
    "TargetInfo": "tipi.params.target",
    "read_target": "tipi.params.signature",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tipi.params' has no attribute '{name}'")
