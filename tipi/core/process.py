"""The process: one step of a pipeline's work, run in config order."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from tipi.core.deprecation import renamed

if TYPE_CHECKING:
    from tipi.core.check import ConfigCheck
    from tipi.core.controller import PipelineController


class PipelineProcess(ABC):
    """Base class of every pipeline step.

    Subclasses take their config parameters as keyword arguments after
    ``controller`` and ``force``, and declare the permanences they use in
    ``requires`` (name -> expected type) so a missing one is reported before
    the run starts.
    """

    requires: ClassVar[Mapping[str, type]] = {}
    #: The metric names this process logs (``fnmatch`` patterns allowed: ``val/iou/*``), so that
    #: ``run.objective`` and metric-valued parameters are checked before the run; None: not declared.
    metrics: ClassVar[tuple[str, ...] | None] = None

    @classmethod
    def check_config(cls, params: Mapping[str, Any], check: ConfigCheck) -> None:
        """Check ``params`` before anything runs (ranges, metric names); raise a ``ConfigError``. Default: none."""

    def __init__(self, controller: PipelineController, force: bool = False) -> None:
        self.controller = controller
        self.force = force

    @abstractmethod
    def execute(self) -> Any:
        """Do the work. The return value is kept as this process's result."""

    def skip(self) -> bool:
        """True when this process's outputs already exist (a resumed run). Default: False."""
        return False


@dataclass
class ProcessSpec:
    """A process spec: a process class and the keyword arguments it will be constructed with, before it is built."""

    cls: type[PipelineProcess]
    params: dict[str, Any] = field(default_factory=dict)
    name: str | None = None

    def __post_init__(self) -> None:
        if self.name is None:
            self.name = self.cls.__name__


def __getattr__(name: str) -> Any:
    return renamed(__name__, name, {"ProcessWithParams": ProcessSpec})
