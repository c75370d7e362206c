"""tipi (TensorImgPipeline): a Hydra-composed experiment launcher for PyTorch research.

Importing ``tipi`` is cheap: the names below are loaded on first use (PEP 562),
so ``python -m tipi --help`` and errors Hydra reports import only the CLI, and
torch and wandb are imported only where used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "CheckpointError": "tipi.core.errors",
    "ConfigError": "tipi.core.errors",
    "DataError": "tipi.core.errors",
    "DeviceError": "tipi.core.errors",
    "Interrupted": "tipi.core.errors",
    "PermanenceError": "tipi.core.errors",
    "ProcessError": "tipi.core.errors",
    "TipiError": "tipi.core.errors",
    "Permanence": "tipi.core.permanence",
    "PipelineBuilder": "tipi.core.builder",
    "PipelineController": "tipi.core.controller",
    "PipelineExecutor": "tipi.core.executor",
    "PipelineProcess": "tipi.core.process",
    "ProcessSpec": "tipi.core.process",
    "PipelineRunner": "tipi.core.runner",
    "RunContext": "tipi.core.context",
    "RunStatus": "tipi.core.record",
    "ConfigCheck": "tipi.core.check",
    "get_current_controller": "tipi.core.context",
    "pipeline_process": "tipi.decorators",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from tipi.core.builder import PipelineBuilder
    from tipi.core.check import ConfigCheck
    from tipi.core.context import RunContext, get_current_controller
    from tipi.core.controller import PipelineController
    from tipi.core.errors import (
        CheckpointError,
        ConfigError,
        DataError,
        DeviceError,
        Interrupted,
        PermanenceError,
        ProcessError,
        TipiError,
    )
    from tipi.core.executor import PipelineExecutor
    from tipi.core.permanence import Permanence
    from tipi.core.process import PipelineProcess, ProcessSpec
    from tipi.core.record import RunStatus
    from tipi.core.runner import PipelineRunner
    from tipi.decorators import pipeline_process


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        if name == "ProcessWithParams":  # the old name of ProcessSpec (warns, names the new one)
            return getattr(importlib.import_module("tipi.core.process"), name)
        raise AttributeError(f"module 'tipi' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
