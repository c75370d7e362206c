"""Rich's ``Progress`` whose rows mirror tipi handles: counters move into Rich only when it redraws.

This module imports Rich at the top: :mod:`.rich_view` imports it only when a
display starts, so ``import tipi`` stays free of Rich.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import RenderableType
from rich.progress import Progress, TaskID

from tipi.permanences.progress.task import ProgressTask

__all__ = ["MirroringProgress"]


class MirroringProgress(Progress):
    """A Rich ``Progress`` whose tasks mirror tipi ``ProgressTask`` handles, pulled in before each render."""

    def __init__(self, *columns: Any, **kwargs: Any) -> None:
        # Set before Progress.__init__, which renders once while building its Live.
        self.mirrored: dict[TaskID, ProgressTask] = {}
        super().__init__(*columns, **kwargs)

    def get_renderables(self) -> Iterable[RenderableType]:
        """Pull every mirrored handle in, then render as Rich does.

        Called under the Live's lock by the refresh thread (and on the final
        refresh in stop()): the one place where counters move into Rich.
        """
        with self._lock:  # the same lock remove_task() takes: no task vanishes mid-update
            for task_id, handle in tuple(self.mirrored.items()):
                self.push(task_id, handle)
        yield from super().get_renderables()

    def mirror(self, task_id: TaskID, handle: ProgressTask | None) -> None:
        """Start (a handle) or stop (None) mirroring ``handle`` into the row ``task_id``."""
        with self._lock:
            if handle is None:
                self.mirrored.pop(task_id, None)
            else:
                self.mirrored[task_id] = handle

    def push(self, task_id: TaskID, handle: ProgressTask) -> None:
        """Copy one handle's total, count, status and postfix into its row (if it is still shown)."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return
            # Only pass what changed: a changed total resets Rich's speed samples.
            total = handle.total if handle.total != task.total else None
            completed = handle.completed if handle.completed != task.completed else None
            status, postfix = handle.status, handle.postfix_text
            unchanged = task.fields.get("status") == status and task.fields.get("postfix") == postfix
            if total is None and completed is None and unchanged:
                return
            self.update(task_id, total=total, completed=completed, status=status, postfix=postfix)
