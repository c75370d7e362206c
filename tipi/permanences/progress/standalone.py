"""Bars outside a pipeline: the manager a script opens for itself, and the current manager.

Inside a running pipeline, bars go to its ``progress`` permanence; in a plain
script (``tipi.helpers.progress_bar``, ``progress_task``) to a standalone
manager that the outermost block starts and stops, shared by the blocks
nested inside it so a script, like a pipeline, has one live display.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TypeVar

from tipi.core.context import get_current_controller
from tipi.permanences.progress.decorator import progress_decorator
from tipi.permanences.progress.manager import ProgressManager

__all__ = ["get_progress_manager", "progress_task", "use_progress"]

R = TypeVar("R")

# A manager a script started for itself (no pipeline running), shared by the
# helpers nested inside it.
_standalone: ContextVar[ProgressManager | None] = ContextVar("tipi_standalone_progress", default=None)


def get_progress_manager() -> ProgressManager | None:
    """The manager bars should go to now, or None.

    Inside a running pipeline: its ``progress`` permanence, once initialized.
    Otherwise: the standalone manager a script opened with :func:`use_progress`.
    """
    controller = get_current_controller()
    if controller is not None:
        perm = controller.permanences.get("progress")
        if isinstance(perm, ProgressManager) and perm.running:
            return perm
    return _standalone.get()


@contextlib.contextmanager
def use_progress() -> Iterator[ProgressManager]:
    """The current manager; if there is none, a standalone one (mode ``auto``) for this block.

    Nested blocks share the outer block's manager, so a script - like a
    pipeline - has one live display however deeply its loops nest.
    """
    manager = get_progress_manager()
    if manager is not None:
        yield manager
        return
    manager = ProgressManager()
    manager.initialize()
    token = _standalone.set(manager)
    try:
        yield manager
    finally:
        _standalone.reset(token)
        manager.cleanup()


def progress_task(
    name: str, total: float | None = None, description: str | None = None
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorate ``fn(task, total, *args, **kwargs)`` so each call runs inside a bar called ``name``.

    Calling convention of the decorated function:

    - ``progress_task(name)``: call it as ``f(total, *args, **kwargs)`` (or
      ``f(*args, total=N, **kwargs)``); it runs as ``fn(task, total, *args, **kwargs)``.
    - ``progress_task(name, total=N)``: call it as ``f(*args, **kwargs)``; it runs as
      ``fn(task, N, *args, **kwargs)``.

    ``task`` is the bar's handle (``task.advance()``, ``task.update(status=..., postfix=...)``).
    The bar goes to the current pipeline's manager (resolved at call time, not at
    decoration time), else to a standalone display for the duration of the call.
    ``ProgressManager.progress_task`` is the same, bound to one manager.
    """
    return progress_decorator(use_progress, name, total, description)
