"""The live display: one Rich ``Progress`` whose rows mirror tipi's handles.

Why the handles do not call Rich on every ``advance()``: Rich's
``Progress.advance`` takes a lock, reads the clock and appends a speed sample,
which costs a few microseconds per call and is measurable inside a tight
training loop. A tipi handle only adds to its own counter (a plain attribute
write); the display pulls the counters into Rich, and records one speed
sample per task, each time its refresh thread redraws (``refresh_per_second``
times a second). Only the thread that owns a handle writes its counter and
the refresh thread only reads it, so no update is lost and no lock is taken.

Rich is imported when a view is built, never at import time.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tipi.permanences.progress.task import ProgressTask, TaskOwner

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from tipi.permanences.progress.mirroring import MirroringProgress

__all__ = ["RichView", "reroute_log_handlers"]

Rerouted = list[tuple[logging.StreamHandler[Any], Any, Any]]


def _stop_quietly(progress: Progress) -> None:
    """Stop a live display at interpreter exit if its view never got to (a leaked bar)."""
    with contextlib.suppress(Exception):
        progress.stop()


class RichView:
    """One live display; each open bar a row, nested bars indented under their parent.

    A bar that closes inside another stays on screen, finished, until its parent
    opens another bar, which takes its row over - reusing it when the name is
    the same - so repeated inner loops do not pile up; rows under a bar that
    closes go with it. Top-level bars stay until the display stops.

    Args:
        console: where to draw.
        refresh_per_second: redraws (and speed samples) a second.
        clock: seconds, monotonic; Rich's ``get_time`` (elapsed, remaining, speed).
    """

    def __init__(self, console: Console, refresh_per_second: float, clock: Callable[[], float]) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from tipi.permanences.progress.mirroring import MirroringProgress

        self.progress: MirroringProgress = MirroringProgress(
            # markup=False: a description, status or postfix with "[" in it is text, not Rich markup.
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}", markup=False),
            TextColumn("{task.fields[postfix]}", markup=False),
            console=console,
            refresh_per_second=refresh_per_second,
            get_time=clock,
        )
        self._rows: dict[ProgressTask, TaskID] = {}  # each open handle's row
        # parent handle -> (name, row) of the finished bar kept under it, until a sibling takes the row
        self._finished_child: dict[ProgressTask, tuple[str, TaskID]] = {}
        self._rerouted: Rerouted = []
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def start(self) -> None:
        """Start drawing; route logging's terminal handlers above the bars."""
        before = (sys.stdout, sys.stderr)
        self.progress.start()
        self._rerouted = reroute_log_handlers(before, (sys.stdout, sys.stderr))
        # A backstop for a bar that is never closed: restore the terminal at exit.
        self._finalizer = weakref.finalize(self, _stop_quietly, self.progress)

    def stop(self) -> None:
        """Draw the final frame and stop; give logging its streams back."""
        finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer.detach()
        self.progress.stop()
        rerouted, self._rerouted = self._rerouted, []
        for handler, proxy, original in rerouted:
            if handler.stream is proxy:
                handler.setStream(original)

    def new_task(self, owner: TaskOwner, name: str, total: float | None, description: str | None) -> ProgressTask:
        """A handle drawn by this view: a plain one, the display pulls its counters."""
        return ProgressTask(owner, name, total, description)

    def open(self, handle: ProgressTask) -> None:
        """Give the handle a row: its parent's finished child's row when the names match, else a new one."""
        progress = self.progress
        description = "  " * handle.depth + handle.description
        reuse: TaskID | None = None
        previous = self._finished_child.pop(handle.parent, None) if handle.parent is not None else None
        if previous is not None:
            name, row = previous
            if name == handle.name:
                reuse = row
            else:
                with contextlib.suppress(KeyError):
                    progress.remove_task(row)
        if reuse is not None:
            progress.reset(
                reuse,
                total=handle.total,
                completed=0,
                description=description,
                visible=True,
                status=handle.status,
                postfix=handle.postfix_text,
            )
            row = reuse
        else:
            row = progress.add_task(description, total=handle.total, status=handle.status, postfix=handle.postfix_text)
        self._rows[handle] = row
        progress.mirror(row, handle)

    def close(self, handle: ProgressTask) -> None:
        """Show the bar finished; keep it under its parent, or drop it if the parent is gone."""
        row = self._rows.pop(handle, None)
        if row is None:
            return
        progress = self.progress
        if handle.total is None or handle.completed > handle.total:
            # An iterable without a length: now we know it, so the bar reads full.
            handle.update(total=handle.completed)
        progress.push(row, handle)
        progress.mirror(row, None)
        with contextlib.suppress(KeyError):
            if handle.total is not None and handle.completed < handle.total:
                progress.stop_task(row)  # left early: freeze its clock
        parent = handle.parent
        if parent is not None:
            if parent.is_open:
                self._finished_child[parent] = (handle.name, row)
            else:  # the parent already closed (closed out of order): nobody will reuse the row
                with contextlib.suppress(KeyError):
                    progress.remove_task(row)
        # Rows under a bar that closes go with it: only the bar's own row remains.
        child = self._finished_child.pop(handle, None)
        if child is not None:
            with contextlib.suppress(KeyError):
                progress.remove_task(child[1])


def reroute_log_handlers(before: tuple[Any, Any], after: tuple[Any, Any]) -> Rerouted:
    """Point logging handlers that write to the real stdout/stderr at the live display's proxies.

    Rich redirects ``sys.stdout``/``sys.stderr`` while a live display runs, so
    ``print`` lands above the bars. Logging handlers (Hydra's console handler
    among them) hold the stream they were configured with and would write
    straight through the display, tearing it; routing them through the same
    proxies keeps log lines above the bars too. Returns what to restore.
    """
    changed: Rerouted = []
    pairs = [(old, new) for old, new in zip(before, after, strict=True) if old is not new]
    if not pairs:
        return changed  # the display did not redirect (not a terminal): nothing to do
    loggers: list[Any] = [logging.getLogger()]
    loggers += [lg for lg in list(logging.Logger.manager.loggerDict.values()) if isinstance(lg, logging.Logger)]
    for lg in loggers:
        for handler in list(lg.handlers):
            if type(handler) is not logging.StreamHandler:  # FileHandler & co. write files, not the terminal
                continue
            for old, new in pairs:
                if handler.stream is old:
                    handler.setStream(new)
                    changed.append((handler, new, old))
    return changed
