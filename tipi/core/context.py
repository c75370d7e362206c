"""What a run knows about itself, and the pipeline that is running now.

``current_controller`` is a ``ContextVar`` the executor sets while a pipeline
runs; the helpers (``tipi.helpers``) read it to use the pipeline's
permanences, and fall back to standalone behaviour when it is unset.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tipi.core.controller import PipelineController
    from tipi.core.record import RunRecord


@dataclass
class RunContext:
    """The run directory, the composed config and the run record of one run."""

    run_dir: Path = field(default_factory=Path.cwd)
    cfg: Any = None
    record: RunRecord | None = None

    @property
    def checkpoint_dir(self) -> Path:
        """``<run dir>/checkpoints``: ``last.pt`` and ``best.pt`` live here."""
        return self.run_dir / "checkpoints"

    @property
    def figures_dir(self) -> Path:
        """``<run dir>/figures``: PNG outputs."""
        return self.run_dir / "figures"


current_controller: ContextVar[PipelineController | None] = ContextVar("tipi_current_controller", default=None)


def get_current_controller() -> PipelineController | None:
    """The controller of the pipeline running in this context, or None in a plain script."""
    return current_controller.get()
