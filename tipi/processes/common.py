"""What the built-in processes share: progress bars that may be switched off, JSON outputs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tipi.core.controller import PipelineController
from tipi.core.record import atomic_write_text


class _NullBar:
    def advance(self, n: float = 1) -> None:
        """Do nothing."""

    def update(self, **_: Any) -> None:
        """Do nothing."""


@contextlib.contextmanager
def bar(controller: PipelineController, name: str, total: float | None) -> Iterator[Any]:
    """A bar of the pipeline's progress permanence, or a no-op when there is none."""
    progress = controller.permanences.get("progress")
    if progress is None or not hasattr(progress, "task"):
        yield _NullBar()
        return
    with progress.task(name, total=total) as handle:
        yield handle


def logger_of(controller: PipelineController) -> Any:
    """The ``logger`` permanence, or None."""
    return controller.permanences.get("logger")


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically write ``data`` as JSON."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
