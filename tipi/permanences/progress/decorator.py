"""``progress_task``: a function whose every call runs inside a bar."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

__all__ = ["TaskFactory", "progress_decorator"]

R = TypeVar("R")


class TaskFactory(Protocol):
    """Something that opens bars: the ``progress`` manager."""

    def task(
        self, name: str, total: float | None = None, description: str | None = None
    ) -> AbstractContextManager[Any]:
        """A bar called ``name`` counting to ``total``, as a context manager."""
        ...


def progress_decorator(
    open_manager: Callable[[], AbstractContextManager[TaskFactory]],
    name: str,
    total: float | None,
    description: str | None,
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorate ``fn(task, total, *args, **kwargs)`` so each call runs inside a bar called ``name``.

    ``open_manager()`` is entered on each call (not at decoration time) and
    gives the manager the bar goes to. Without a fixed ``total`` the call's
    first argument (or ``total=``) is the bar's total.
    """

    def decorate(fn: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> R:
            if total is not None:
                bar_total: float | None = total
            elif "total" in kwargs:
                bar_total = kwargs.pop("total")
            elif args:
                bar_total, args = args[0], args[1:]
            else:
                raise TypeError(
                    f"{fn.__qualname__}() needs the bar's total as its first argument "
                    f"(or give progress_task(..., total=N))"
                )
            with open_manager() as manager, manager.task(name, bar_total, description) as bar:
                return fn(bar, bar_total, *args, **kwargs)

        return wrapper

    return decorate
