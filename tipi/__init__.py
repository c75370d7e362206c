"""tipi (TensorImgPipeline): a Hydra-composed experiment launcher for PyTorch research.

Importing ``tipi`` is cheap: torch and wandb are imported only where used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tipi.core.builder import PipelineBuilder
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
from tipi.core.process import PipelineProcess, ProcessWithParams
from tipi.core.runner import PipelineRunner

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DeviceError",
    "Interrupted",
    "Permanence",
    "PermanenceError",
    "PipelineBuilder",
    "PipelineController",
    "PipelineExecutor",
    "PipelineProcess",
    "PipelineRunner",
    "ProcessError",
    "ProcessWithParams",
    "RunContext",
    "TipiError",
    "get_current_controller",
    "pipeline_process",
]

if TYPE_CHECKING:
    from tipi.decorators import pipeline_process


def __getattr__(name: str) -> Any:
    # The decorator pulls in the helpers; load it on first use only.
    if name == "pipeline_process":
        from tipi.decorators import pipeline_process

        return pipeline_process
    raise AttributeError(f"module 'tipi' has no attribute {name!r}")
