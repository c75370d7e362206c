"""The permanence: a long-lived resource with a lifecycle.

Construction allocates nothing; the controller then calls, in build order,
``initialize()`` and ``validate()``; ``checkpoint()`` after every process and
when a run is interrupted; ``cleanup()`` always, in reverse order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tipi.core.controller import PipelineController

P = TypeVar("P", bound="Permanence")


class Permanence(ABC):
    """Base class of every resource a pipeline holds for its whole run."""

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

    def sibling(self, name: str, expected_type: type[P] | None = None) -> P | Any:
        """Another permanence of the same pipeline, by name (type-checked if asked)."""
        return self.controller.get_permanence(name, expected_type)
