"""Plain progress lines for log files and SLURM: no ANSI sequences, rate-limited per bar.

A bar prints a line when it has been quiet for ``interval_s`` (checked on
``advance()``, against the injected clock) and a ``done`` line when it closes.
The limit is per bar *path*, not per handle: a loop that reopens its inner bar
a thousand times prints like one long bar.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from tipi.permanences.progress.task import ProgressTask, TaskOwner

__all__ = ["PlainTask", "PlainView"]


class PlainTask(ProgressTask):
    """A handle in ``plain`` mode: reads the clock on ``advance()`` so it can print a rate-limited line."""

    __slots__ = ("clock", "next_line", "view")

    def __init__(
        self, view: PlainView, owner: TaskOwner, name: str, total: float | None, description: str | None
    ) -> None:
        super().__init__(owner, name, total, description)
        self.view = view
        self.clock = view.clock  # bound once: advance() pays one call, not two lookups and a call
        self.next_line = float("inf")  # when this bar may print again; set when it opens

    def advance(self, n: float = 1) -> None:
        """Add ``n``; print a line when this bar has been quiet for the view's interval."""
        self.completed += n
        if self.clock() >= self.next_line and self.owner is not None:
            self.view.progress_line(self)


class PlainView:
    """Writes one line per bar per ``interval_s`` and a ``done`` line when a bar closes.

    Args:
        interval_s: the least time between two lines of one bar path.
        stream: where lines go; None: ``sys.stderr`` at the time of writing.
        clock: seconds, monotonic (``time.monotonic``, or a test's fake clock).
    """

    def __init__(self, interval_s: float, stream: TextIO | None, clock: Callable[[], float]) -> None:
        self.interval_s = interval_s
        self.stream = stream
        self.clock = clock
        self._next_line: dict[str, float] = {}
        self._next_finish: dict[str, float] = {}
        self._write_lock = threading.Lock()

    def new_task(self, owner: TaskOwner, name: str, total: float | None, description: str | None) -> PlainTask:
        """A handle that prints through this view."""
        return PlainTask(self, owner, name, total, description)

    def open(self, handle: ProgressTask) -> None:
        """A bar opened (its ``started`` is set): it may print once it has been quiet for an interval."""
        if isinstance(handle, PlainTask):
            handle.next_line = max(self._next_line.get(handle.path, 0.0), handle.started + self.interval_s)

    def progress_line(self, handle: PlainTask) -> None:
        """Print the bar's progress now and hold its next line back for an interval."""
        now = self.clock()
        handle.next_line = now + self.interval_s
        self._next_line[handle.path] = handle.next_line
        self._write(handle, now, done=False)

    def close(self, handle: ProgressTask) -> None:
        """Print the bar's ``done`` line; an inner bar that finishes often prints one per interval."""
        now = self.clock()
        if handle.depth > 0 and now < self._next_finish.get(handle.path, 0.0):
            return
        self._next_finish[handle.path] = now + self.interval_s
        self._write(handle, now, done=True)

    def stop(self) -> None:
        """Nothing to tear down: every line is already written."""

    def _write(self, handle: ProgressTask, now: float, *, done: bool) -> None:
        line = plain_line(handle, now - handle.started, done=done) + "\n"
        stream = self.stream if self.stream is not None else sys.stderr
        with self._write_lock, contextlib.suppress(OSError, ValueError):  # a closed stream must not stop the run
            stream.write(line)
            stream.flush()


def plain_line(handle: ProgressTask, elapsed: float, *, done: bool) -> str:
    """``"  overall/epoch 3/10 30% elapsed 0:00:12 eta 0:00:28 <status> <postfix>"`` for one bar."""
    count = f"{handle.completed:g}" if handle.total is None else f"{handle.completed:g}/{handle.total:g}"
    parts = [f"{'  ' * handle.depth}{handle.path}", count]
    if handle.total:
        parts.append(f"{100.0 * handle.completed / handle.total:.0f}%")
    parts.append(f"elapsed {hms(elapsed)}")
    if done:
        parts.append("done")
    elif handle.total and handle.completed > 0 and handle.depth > 0:
        # an ETA only where the steps are alike (an epoch's batches, the epochs): the top bar counts
        # processes, and training is most of the run, so its ETA would be stale the moment training ends
        remaining = elapsed * (handle.total - handle.completed) / handle.completed
        parts.append(f"eta {hms(remaining)}")
    if handle.status and not (done and handle.status == "done"):  # one "done", not "done done"
        parts.append(handle.status)
    postfix = handle.postfix_text
    if postfix:
        parts.append(postfix)
    return " ".join(parts)


def hms(seconds: float) -> str:
    """``75.3`` -> ``"0:01:15"``."""
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
