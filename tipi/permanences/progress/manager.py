"""The ``progress`` permanence: one owner of one display for the whole run.

It starts a view in ``initialize()`` and stops it in ``cleanup()``; every bar
of the run - the executor's ``overall`` and ``cleanup`` bars, a process's
``epoch`` and ``batches`` loops, the helpers' ``progress_bar`` - is a task of
that one display, opened with :meth:`ProgressManager.task`.

Modes: ``rich`` (a live display, :mod:`.rich_view`), ``plain`` (rate-limited
lines on stderr, no ANSI sequences: for log files and SLURM, :mod:`.plain_view`),
``none`` (every ``task()`` is the one shared do-nothing handle), ``auto``
(``rich`` when the display stream is a terminal, else ``plain``; decided in
``initialize()``). As Rich's own ``Progress`` does, it takes the console to
draw on and the clock to read (``get_time``), so a test can drive both.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO, TypeVar

from tipi.core.errors import ConfigError
from tipi.core.permanence import Permanence
from tipi.permanences.progress.decorator import progress_decorator
from tipi.permanences.progress.plain_view import PlainView
from tipi.permanences.progress.rich_view import RichView
from tipi.permanences.progress.task import NULL_TASK, NullProgressTask, ProgressTask

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["MODES", "ProgressManager"]

MODES = ("auto", "rich", "plain", "none")

R = TypeVar("R")


class ProgressManager(Permanence):
    """The ``progress`` permanence: the run's one progress display.

    Args:
        mode: ``auto`` (Rich on a terminal, else ``plain``), ``rich``, ``plain`` or ``none``.
        refresh_per_second: how often the Rich display redraws (and samples speeds).
        plain_interval_s: in ``plain`` mode, the least time between two lines of one bar.
        console: the Rich console to draw on; default: a console on stderr, so stdout
            stays clean for a program's output.
        stream: in ``plain`` mode, where lines go; default: ``sys.stderr`` at the time of writing.
        get_time: the clock, in seconds (default ``time.monotonic``): elapsed and remaining
            times, speeds and the plain lines' rate limit all read it.

    Construction only checks and stores the arguments; the display starts in
    :meth:`initialize` and stops in :meth:`cleanup`.
    """

    def __init__(
        self,
        mode: str = "auto",
        refresh_per_second: float = 4,
        plain_interval_s: float = 10.0,
        console: Console | None = None,
        stream: TextIO | None = None,
        get_time: Callable[[], float] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(
                f"unknown progress mode '{mode}'. Valid: {', '.join(MODES)}",
                key="permanences.progress.mode",
                hint="Pick one with progress=<mode> (conf/progress/).",
            )
        if refresh_per_second <= 0:
            raise ConfigError(f"must be > 0, got {refresh_per_second!r}", key="permanences.progress.refresh_per_second")
        if plain_interval_s < 0:
            raise ConfigError(f"must be >= 0, got {plain_interval_s!r}", key="permanences.progress.plain_interval_s")
        self.mode = mode
        self.refresh_per_second = float(refresh_per_second)
        self.plain_interval_s = float(plain_interval_s)
        self.console = console
        self.stream = stream
        self.get_time: Callable[[], float] = get_time if get_time is not None else time.monotonic
        # Resolved in initialize(): "rich", "plain" or "none".
        self.active_mode: str | None = None
        self._state = "new"  # new -> running -> (closing ->) closed
        self._view: RichView | PlainView | None = None
        self._open: list[ProgressTask] = []

    # -- lifecycle --------------------------------------------------------
    def _resolve_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        if self.console is not None:
            return "rich" if (self.console.is_terminal or self.console.is_jupyter) else "plain"
        from rich.console import Console

        # Ask Rich rather than isatty(): it honours TTY_COMPATIBLE / FORCE_COLOR,
        # dumb terminals and Jupyter the same way the display itself will.
        probe = Console(stderr=True)
        return "rich" if (probe.is_terminal and not probe.is_dumb_terminal) or probe.is_jupyter else "plain"

    def initialize(self) -> None:
        """Decide the mode and start its view (for ``rich``, the live display)."""
        if self._state == "running":
            return
        self.active_mode = self._resolve_mode()
        self._open = []
        if self.active_mode == "rich":
            from rich.console import Console

            view = RichView(
                self.console if self.console is not None else Console(stderr=True),
                self.refresh_per_second,
                self.get_time,
            )
            view.start()
            self._view = view
        elif self.active_mode == "plain":
            self._view = PlainView(self.plain_interval_s, self.stream, self.get_time)
        self._state = "running"

    def cleanup(self) -> None:
        """Stop the display. Idempotent; safe before ``initialize`` and with bars still open.

        Bars still open now (the executor's ``cleanup`` bar, which wraps this very
        call) keep counting; the display stops when the last of them closes, so
        the final frame shows them finished. Bars opened from now on show nothing.
        """
        if self._state != "running":
            return
        if self._open:
            self._state = "closing"
            return
        self._stop()

    def _stop(self) -> None:
        self._state = "closed"
        view, self._view = self._view, None
        if view is not None:
            view.stop()

    def get_state(self) -> dict[str, object]:
        """The mode in use and the bars open now."""
        return {"mode": self.active_mode or self.mode, "open": [handle.path for handle in self._open]}

    @property
    def running(self) -> bool:
        """True between ``initialize()`` and the end of ``cleanup()`` (bars open now are shown)."""
        return self._state in ("running", "closing")

    @property
    def display(self) -> Progress | None:
        """The Rich ``Progress`` drawing the bars while a ``rich`` display runs, else None."""
        return self._view.progress if isinstance(self._view, RichView) else None

    @property
    def open_tasks(self) -> tuple[ProgressTask, ...]:
        """The bars open now, outermost first."""
        return tuple(self._open)

    # -- tasks ------------------------------------------------------------
    def task(
        self, name: str, total: float | None = None, description: str | None = None
    ) -> ProgressTask | NullProgressTask:
        """A bar called ``name`` counting to ``total`` (None: unknown), as a context manager.

        ``with progress.task("epoch", total=10) as bar: ... bar.advance()``. A
        bar opened inside another is shown indented under it; when it closes it
        stays on screen (finished) until its parent opens another bar, which
        takes its row over - reusing it when the name is the same - so repeated
        inner loops do not pile up. Top-level bars stay until the display stops.
        """
        if self.active_mode == "none" or (self.mode == "none" and self._state == "new"):
            return NULL_TASK
        if self._state != "running" or self._view is None:
            return ProgressTask(None, name, total, description)  # before initialize / after cleanup: count only
        return self._view.new_task(self, name, total, description)

    def progress_task(
        self, name: str, total: float | None = None, description: str | None = None
    ) -> Callable[[Callable[..., R]], Callable[..., R]]:
        """Decorate ``fn(task, total, *args, **kwargs)`` so each call runs inside a bar of this manager.

        See :func:`tipi.permanences.progress.progress_task` for the calling convention.
        """
        return progress_decorator(lambda: contextlib.nullcontext(self), name, total, description)

    # -- the TaskOwner side: called by the handles this manager made ----------
    def open_task(self, handle: ProgressTask) -> None:
        """Show a bar that has just been entered (nothing, once cleanup has begun)."""
        if self._state != "running" or self._view is None:
            handle.detach()
            return
        handle.started = self.get_time()
        self._view.open(handle)
        self._open.append(handle)

    def close_task(self, handle: ProgressTask) -> None:
        """Show a bar that has just been exited as finished; stop a closing display after its last bar."""
        with contextlib.suppress(ValueError):
            self._open.remove(handle)
        if self._view is not None:
            self._view.close(handle)
        if self._state == "closing" and not self._open:
            self._stop()
