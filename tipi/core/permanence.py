"""The permanence: a long-lived resource with a lifecycle.

Construction allocates nothing; the controller then calls, in build order,
``initialize()`` and ``validate()``; ``checkpoint()`` after every process and
when a run is interrupted; ``cleanup()`` always, in reverse order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tipi.core.check import ConfigCheck
    from tipi.core.controller import PipelineController


class Permanence(ABC):
    """Base class of every resource a pipeline holds for its whole run."""

    @classmethod
    def check_config(cls, params: Mapping[str, Any], check: ConfigCheck) -> None:
        """Check ``params`` before anything is built (nested targets, ranges); raise a ``ConfigError``.

        Called by the builder, after the parameters bound to the signature. Default: nothing more.
        """

    def initialize(self) -> None:
        """Allocate resources (memory, devices, files, connections). Default: nothing."""

    def validate(self) -> None:
        """Check the initialized resource is healthy; raise a ``TipiError`` if not. Default: nothing."""

    def checkpoint(self) -> None:
        """Persist state so a run can resume. Default: nothing to save."""

    def get_state(self) -> dict[str, Any]:
        """A small JSON-able summary of the state, for logs and ``run.json``. Default: ``{}``."""
        return {}

    @abstractmethod
    def cleanup(self) -> None:
        """Release everything ``initialize()`` took. Must tolerate a partial initialize."""

    # The controller attaches itself so a permanence can reach its siblings
    # (the network asks for the device) without globals.
    def attach(self, controller: PipelineController) -> None:
        """Called by the controller that owns this permanence."""
        self.__dict__["_tipi_controller"] = controller

    @property
    def controller(self) -> PipelineController:
        """The controller this permanence belongs to."""
        controller = self.__dict__.get("_tipi_controller")
        if controller is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a PipelineController")
        return controller
