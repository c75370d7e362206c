"""What the built-in processes share: progress bars that may be switched off, JSON outputs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tipi.core.controller import PipelineController
from tipi.core.record import atomic_write_text
from tipi.permanences.progress import NULL_TASK


@contextlib.contextmanager
def bar(controller: PipelineController, name: str, total: float | None) -> Iterator[Any]:
    """A bar of the pipeline's progress permanence, or a no-op when there is none."""
    progress = controller.permanences.get("progress")
    if progress is None or not hasattr(progress, "task"):
        yield NULL_TASK
        return
    with progress.task(name, total=total) as handle:
        yield handle


def pixel_cross_entropy(logits: Any, masks: Any, reduction: str = "mean") -> Any:
    """``F.cross_entropy`` over every pixel; on CUDA under ``run.deterministic``, over a (pixels, classes) matrix.

    PyTorch's per-pixel (N, C, H, W) loss sums with atomic adds on CUDA and has
    no deterministic version (``torch.use_deterministic_algorithms`` raises);
    the same loss over one row a pixel has one. On the CPU the two are bit-identical.
    """
    import torch
    import torch.nn.functional as F

    if logits.is_cuda and logits.dim() > 2 and torch.are_deterministic_algorithms_enabled():
        rows = logits.movedim(1, -1).reshape(-1, logits.shape[1])
        return F.cross_entropy(rows, masks.reshape(-1), reduction=reduction)
    return F.cross_entropy(logits, masks, reduction=reduction)


def logger_of(controller: PipelineController) -> Any:
    """The ``logger`` permanence, or None."""
    return controller.permanences.get("logger")


def made_at_step(path: Path, step: int) -> bool:
    """Whether the JSON output ``path`` exists and was made at training step ``step``.

    A resumed run that trained on (``processes.train.epochs=30``) makes the
    outputs of the steps after training stale: they run again. An output
    without a recorded step (older runs) counts as current.
    """
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("step", step)
    except (OSError, ValueError, AttributeError):
        return False
    return bool(recorded == step)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically write ``data`` as JSON."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
