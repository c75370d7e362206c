"""The handle of one bar and its state, and which bar is open in this context.

A handle only counts: ``advance()`` is one attribute write, ``update()`` a few.
What a bar looks like on screen is the views' business (``rich_view``,
``plain_view``); a handle never holds their state. The owner of a handle (the
:class:`~tipi.permanences.progress.manager.ProgressManager`) is told when it
opens and closes, through the two methods of :class:`TaskOwner`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import Protocol

from tipi.core.progress import NULL_TASK, NullTask

__all__ = ["NULL_TASK", "NullProgressTask", "ProgressTask", "TaskOwner", "format_postfix"]


class TaskOwner(Protocol):
    """Who shows a handle: told when the handle opens and closes (the ``progress`` manager)."""

    def open_task(self, handle: ProgressTask) -> None:
        """The handle has been entered; show it (or ``handle.detach()`` to show nothing)."""

    def close_task(self, handle: ProgressTask) -> None:
        """The handle has been exited; show it finished."""


# The innermost open task of this thread / asyncio task. A ContextVar (not a
# per-manager list) so that nesting follows the code that opened the bars,
# and a bar opened in a worker thread starts at the top level instead of
# being indented under whatever the main thread has open.
_current_task: ContextVar[ProgressTask | None] = ContextVar("tipi_progress_task", default=None)

_NO_POSTFIX: Mapping[str, object] = MappingProxyType({})


def format_postfix(postfix: Mapping[str, object]) -> str:
    """``{"loss": 0.12345, "val/mean_iou": 0.4561}`` -> ``"loss 0.123  val/mean_iou 0.456"``.

    Floats get three significant digits (as Lightning's bar shows them); other values their ``str``.
    """
    return "  ".join(
        f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}" for key, value in postfix.items()
    )


# The one do-nothing handle lives in the engine, which needs it without a progress
# permanence and may not import this package; mode ``none`` hands out the same instance.
NullProgressTask = NullTask


class ProgressTask:
    """The handle of one bar: a context manager that opens the bar on enter and closes it on exit.

    ``advance(n)`` adds to ``completed``; ``update(total=, completed=, status=, postfix=)``
    changes what the bar shows (``None`` leaves a field as it is). Both only
    write attributes of this object; the display picks them up when it redraws.

    Read-only for everyone but the handle and its owner: ``path`` (the names of
    the open bars above it and its own, ``"overall/epoch"``), ``depth``,
    ``parent``, ``is_open``, ``started`` (the owner's clock when it opened).
    """

    __slots__ = (
        "__weakref__",
        "_token",
        "completed",
        "depth",
        "description",
        "is_open",
        "name",
        "owner",
        "parent",
        "path",
        "postfix",
        "started",
        "status",
        "total",
    )

    def __init__(self, owner: TaskOwner | None, name: str, total: float | None, description: str | None = None) -> None:
        self.owner = owner
        self.name = name
        self.description = description if description is not None else name
        self.total = float(total) if total is not None else None
        self.completed = 0.0
        self.status = ""
        # Replaced, never mutated: the display's thread reads it while the loop's thread updates it.
        self.postfix: Mapping[str, object] = _NO_POSTFIX
        self.depth = 0
        self.parent: ProgressTask | None = None
        self.path = name
        self.started = 0.0
        self.is_open = False
        self._token: Token[ProgressTask | None] | None = None

    # -- the hot path -----------------------------------------------------
    def advance(self, n: float = 1) -> None:
        """Add ``n`` to ``completed``: one attribute write; the display reads it when it redraws."""
        self.completed += n

    def update(
        self,
        *,
        total: float | None = None,
        completed: float | None = None,
        status: str | None = None,
        postfix: Mapping[str, object] | None = None,
    ) -> None:
        """Set the total, the completed count, the status text (``None``: unchanged).

        ``postfix`` merges named values into those shown after the bar
        (``postfix={"loss": 0.12}`` shows ``loss 0.12``); a value of ``None`` removes its name.
        """
        if total is not None:
            self.total = float(total)
        if completed is not None:
            self.completed = completed
        if status is not None:
            self.status = status
        if postfix is not None:
            merged = {**self.postfix, **postfix}
            self.postfix = {key: value for key, value in merged.items() if value is not None}

    @property
    def postfix_text(self) -> str:
        """The postfix as shown: ``"loss 0.123  val/mean_iou 0.456"`` (empty when there is none)."""
        return format_postfix(self.postfix)

    def detach(self) -> None:
        """Show nothing from now on (the owner calls this when it cannot show the bar); counting goes on."""
        self.owner = None

    # -- context manager --------------------------------------------------
    def __enter__(self) -> ProgressTask:
        parent = _current_task.get()
        if parent is not None and parent.owner is self.owner and parent.is_open:
            self.parent = parent
            self.depth = parent.depth + 1
            self.path = f"{parent.path}/{self.name}"
        self._token = _current_task.set(self)
        self.is_open = True
        if self.owner is not None:
            self.owner.open_task(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.is_open = False
        token, self._token = self._token, None
        if token is not None:
            # ValueError: exited in another context than it was entered in (a
            # generator finished by the garbage collector): that nesting is not ours.
            with contextlib.suppress(ValueError):
                _current_task.reset(token)
        if self.owner is not None:
            self.owner.close_task(self)

    def __repr__(self) -> str:
        total = "?" if self.total is None else f"{self.total:g}"
        return f"<ProgressTask {self.path} {self.completed:g}/{total}>"
