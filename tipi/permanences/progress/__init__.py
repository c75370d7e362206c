"""Progress display: one owner of one live display for the whole run.

:class:`ProgressManager` is the ``progress`` permanence; every bar of a run is
a task of its one display, opened with :meth:`ProgressManager.task`::

    with progress.task("epoch", total=epochs) as epoch_bar:
        for epoch in range(epochs):
            with progress.task("train-val", total=len(loader)) as batch_bar:
                for batch in loader:
                    ...
                    batch_bar.advance()
            epoch_bar.advance()
            epoch_bar.update(postfix={"val/mean_iou": 0.5})   # shown after the bar

The package, by job: :mod:`.task` (the handle and its state, the one
do-nothing handle), :mod:`.rich_view` (the live display), :mod:`.plain_view`
(rate-limited lines), :mod:`.manager` (the permanence), :mod:`.standalone`
(bars in a plain script: ``use_progress``, ``progress_task``),
:mod:`.decorator`. Rich is imported only when a display starts, so
``import tipi`` stays cheap; torch is never imported here.
"""

from __future__ import annotations

from tipi.permanences.progress.manager import MODES, ProgressManager
from tipi.permanences.progress.standalone import get_progress_manager, progress_task, use_progress
from tipi.permanences.progress.task import NULL_TASK, NullProgressTask, ProgressTask, format_postfix

__all__ = [
    "MODES",
    "NULL_TASK",
    "NullProgressTask",
    "ProgressManager",
    "ProgressTask",
    "format_postfix",
    "get_progress_manager",
    "progress_task",
    "use_progress",
]
