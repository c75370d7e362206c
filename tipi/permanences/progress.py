"""Progress display: one owner of one live display for the whole run.

:class:`ProgressManager` is the ``progress`` permanence. It starts a single
Rich ``Progress`` (a live display) in ``initialize()`` and stops it in
``cleanup()``; every bar of the run - the executor's ``overall`` and
``cleanup`` bars, a process's ``epoch`` and ``train-val`` loops, the helpers'
``progress_bar`` - is a *task* of that one display, opened with
:meth:`ProgressManager.task`::

    with progress.task("epoch", total=epochs) as epoch_bar:
        for epoch in range(epochs):
            with progress.task("train-val", total=len(loader)) as batch_bar:
                for batch in loader:
                    ...
                    batch_bar.advance()
            epoch_bar.advance()

Why the handles do not call Rich on every ``advance()``: Rich's
``Progress.advance`` takes a lock, reads the clock and appends a speed sample,
which costs a few microseconds per call and is measurable inside a tight
training loop. A tipi handle only adds to its own counter (a plain attribute
write); the display pulls the counters into Rich, and records one speed
sample per task, each time its refresh thread redraws (``refresh_per_second``
times a second). Only the thread that owns a handle writes its counter and
the refresh thread only reads it, so no update is lost and no lock is taken.

Modes: ``rich`` (the live display), ``plain`` (rate-limited lines on stderr,
no ANSI sequences: for log files and SLURM), ``none`` (every ``task()`` is one
shared no-op handle), ``auto`` (``rich`` when the display stream is a
terminal, else ``plain``; decided in ``initialize()``).

Rich is imported only inside the methods that need it, so ``import tipi``
stays cheap; torch is never imported here.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from tipi.core.context import get_current_controller
from tipi.core.errors import ConfigError
from tipi.core.permanence import Permanence

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = [
    "MODES",
    "NULL_TASK",
    "NullProgressTask",
    "ProgressManager",
    "ProgressTask",
    "get_progress_manager",
    "progress_task",
    "use_progress",
]

MODES = ("auto", "rich", "plain", "none")

R = TypeVar("R")

# The innermost open task of this thread / asyncio task. A ContextVar (not a
# per-manager list) so that nesting follows the code that opened the bars,
# and a bar opened in a worker thread starts at the top level instead of
# being indented under whatever the main thread has open.
_current_task: ContextVar[ProgressTask | None] = ContextVar("tipi_progress_task", default=None)

# A manager a script started for itself (no pipeline running), shared by the
# helpers nested inside it so a script also has one live display only.
_standalone: ContextVar[ProgressManager | None] = ContextVar("tipi_standalone_progress", default=None)


class NullProgressTask:
    """The handle of a progress task that shows nothing (mode ``none``, or nothing to show on).

    One shared instance (:data:`NULL_TASK`) serves every ``task()`` call, so a
    disabled display costs one method call per ``advance()`` and no allocation.
    """

    __slots__ = ()
    name = ""
    description = ""
    total: float | None = None
    completed = 0.0
    status = ""
    depth = 0

    def advance(self, n: float = 1) -> None:
        """Do nothing."""

    def update(self, *, total: float | None = None, completed: float | None = None,
               status: str | None = None) -> None:
        """Do nothing."""

    def __enter__(self) -> NullProgressTask:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


NULL_TASK = NullProgressTask()


class ProgressTask:
    """The handle of one bar: a context manager that opens the bar on enter and closes it on exit.

    ``advance(n)`` adds to ``completed``; ``update(total=, completed=, status=)``
    changes what the bar shows (``None`` leaves a field as it is). Both only
    write attributes of this object; the display picks them up when it redraws.
    """

    __slots__ = (
        "__weakref__",
        "_finished_child",
        "_manager",
        "_next_line",
        "_open",
        "_path",
        "_started",
        "_task_id",
        "_token",
        "completed",
        "depth",
        "description",
        "name",
        "parent",
        "status",
        "total",
    )

    def __init__(self, manager: ProgressManager | None, name: str, total: float | None,
                 description: str | None) -> None:
        self.name = name
        self.description = description if description is not None else name
        self.total = float(total) if total is not None else None
        self.completed = 0.0
        self.status = ""
        self.depth = 0
        self.parent: ProgressTask | None = None
        self._manager = manager
        self._task_id: Any = None  # Rich's TaskID, once the bar is on screen
        self._path = name
        self._started = 0.0
        self._next_line = float("inf")  # plain mode: when this bar may print again
        self._finished_child: ProgressTask | None = None  # rich mode: the one finished row kept below us
        self._open = False
        self._token: Any = None

    # -- the hot path -----------------------------------------------------
    def advance(self, n: float = 1) -> None:
        """Add ``n`` to ``completed``: one attribute write; the display reads it when it redraws."""
        self.completed += n

    def update(self, *, total: float | None = None, completed: float | None = None,
               status: str | None = None) -> None:
        """Set the total, the completed count or the status text (``None``: unchanged)."""
        if total is not None:
            self.total = float(total)
        if completed is not None:
            self.completed = completed
        if status is not None:
            self.status = status

    # -- context manager --------------------------------------------------
    def __enter__(self) -> ProgressTask:
        parent = _current_task.get()
        if parent is not None and parent._manager is self._manager and parent._open:
            self.parent = parent
            self.depth = parent.depth + 1
            self._path = f"{parent._path}/{self.name}"
        self._token = _current_task.set(self)
        self._open = True
        if self._manager is not None:
            self._manager._open_task(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._open = False
        token, self._token = self._token, None
        if token is not None:
            # ValueError: exited in another context than it was entered in (a
            # generator finished by the garbage collector): that nesting is not ours.
            with contextlib.suppress(ValueError):
                _current_task.reset(token)
        if self._manager is not None:
            self._manager._close_task(self)

    def __repr__(self) -> str:
        total = "?" if self.total is None else f"{self.total:g}"
        return f"<ProgressTask {self._path} {self.completed:g}/{total}>"


class _PlainTask(ProgressTask):
    """A handle in ``plain`` mode: checks the clock on advance so it can print a rate-limited line."""

    __slots__ = ()

    def advance(self, n: float = 1) -> None:
        """Add ``n``; print a line when this bar has been quiet for ``plain_interval_s``."""
        self.completed += n
        if time.monotonic() >= self._next_line and self._manager is not None:
            self._manager._plain_progress_line(self)


@functools.cache
def _synced_progress_class() -> type[Progress]:
    """Rich's ``Progress``, pulling tipi handles' counters in just before each render.

    Built on first use so that Rich is imported only when a display starts.
    """
    from rich.progress import Progress

    class SyncedProgress(Progress):
        """A Rich ``Progress`` whose tasks mirror tipi ``ProgressTask`` handles."""

        def __init__(self, *columns: Any, handles: list[ProgressTask], **kwargs: Any) -> None:
            # Set before Progress.__init__, which renders once while building its Live.
            self.tipi_handles = handles
            super().__init__(*columns, **kwargs)

        def get_renderables(self) -> Iterator[Any]:
            # Called under the Live's lock by the refresh thread (and on the
            # final refresh in stop()): the one place where counters move into Rich.
            self.sync_handles()
            yield from super().get_renderables()

        def sync_handles(self) -> None:
            """Copy each open handle's total, count and status into its Rich task."""
            with self._lock:  # the same lock remove_task() takes: no task vanishes mid-update
                for handle in tuple(self.tipi_handles):
                    self.push(handle)

        def push(self, handle: ProgressTask) -> None:
            """Copy one handle into its Rich task (if it is still shown)."""
            with self._lock:
                task = self._tasks.get(handle._task_id)
                if task is None:
                    return
                # Only pass what changed: a changed total resets Rich's speed samples.
                total = handle.total if handle.total != task.total else None
                completed = handle.completed if handle.completed != task.completed else None
                if total is None and completed is None and task.fields.get("status") == handle.status:
                    return
                self.update(handle._task_id, total=total, completed=completed, status=handle.status)

    return SyncedProgress


def _stop_quietly(progress: Progress) -> None:
    """Stop a live display at interpreter exit if its manager never got to (a leaked bar)."""
    with contextlib.suppress(Exception):
        progress.stop()


class ProgressManager(Permanence):
    """The ``progress`` permanence: the run's one progress display.

    Args:
        mode: ``auto`` (Rich on a terminal, else ``plain``), ``rich``, ``plain`` or ``none``.
        refresh_per_second: how often the Rich display redraws (and samples speeds).
        plain_interval_s: in ``plain`` mode, the least time between two lines of one bar.
        console: the Rich console to draw on; default: a console on stderr, so stdout
            stays clean for a program's output.
        stream: in ``plain`` mode, where lines go; default: ``sys.stderr`` at the time of writing.

    Construction only checks and stores the arguments; the display starts in
    :meth:`initialize` and stops in :meth:`cleanup`.
    """

    def __init__(self, mode: str = "auto", refresh_per_second: float = 4, plain_interval_s: float = 10.0,
                 console: Console | None = None, stream: TextIO | None = None) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown progress mode '{mode}'. Valid: {', '.join(MODES)}",
                              key="permanences.progress.mode",
                              hint="Pick one with progress=<mode> (conf/progress/).")
        if refresh_per_second <= 0:
            raise ConfigError(f"must be > 0, got {refresh_per_second!r}",
                              key="permanences.progress.refresh_per_second")
        if plain_interval_s < 0:
            raise ConfigError(f"must be >= 0, got {plain_interval_s!r}",
                              key="permanences.progress.plain_interval_s")
        self.mode = mode
        self.refresh_per_second = float(refresh_per_second)
        self.plain_interval_s = float(plain_interval_s)
        self.console = console
        self.stream = stream
        # Resolved in initialize(): "rich", "plain" or "none".
        self.active_mode: str | None = None
        self._state = "new"  # new -> running -> (closing ->) closed
        self._progress: Progress | None = None
        self._open: list[ProgressTask] = []
        self._plain_next_line: dict[str, float] = {}
        self._plain_next_finish: dict[str, float] = {}
        self._write_lock: threading.Lock | None = None
        self._finalizer: weakref.finalize | None = None
        self._rerouted: list[tuple[logging.StreamHandler[Any], Any, Any]] = []

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
        """Decide the mode and, for ``rich``, start the live display."""
        if self._state == "running":
            return
        self.active_mode = self._resolve_mode()
        self._open = []
        self._plain_next_line = {}
        self._plain_next_finish = {}
        if self.active_mode == "rich":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            console = self.console if self.console is not None else Console(stderr=True)
            progress_cls = _synced_progress_class()
            progress = progress_cls(
                # markup=False: a description or status with "[" in it is text, not Rich markup.
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}", markup=False),
                console=console,
                refresh_per_second=self.refresh_per_second,
                handles=self._open,
            )
            before = (sys.stdout, sys.stderr)
            progress.start()
            self._progress = progress
            self._rerouted = _reroute_log_handlers(before, (sys.stdout, sys.stderr))
            # A backstop for a bar that is never closed: restore the terminal at exit.
            self._finalizer = weakref.finalize(self, _stop_quietly, progress)
        elif self.active_mode == "plain":
            self._write_lock = threading.Lock()
        self._state = "running"

    def cleanup(self) -> None:
        """Stop the display. Idempotent; safe before ``initialize`` and with bars still open.

        Bars still open now (the executor's ``cleanup`` bar, which wraps this very
        call) keep counting; the display stops when the last of them closes, so
        the final frame shows them finished. Bars opened from now on show nothing.
        """
        if self._state != "running":
            return
        if self._open and self.active_mode == "rich":
            self._state = "closing"
            return
        self._stop()

    def _stop(self) -> None:
        self._state = "closed"
        progress, self._progress = self._progress, None
        finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer.detach()
        if progress is not None:
            progress.stop()
        rerouted, self._rerouted = self._rerouted, []
        for handler, proxy, original in rerouted:
            if handler.stream is proxy:
                handler.setStream(original)

    def get_state(self) -> dict[str, Any]:
        """The mode in use and the bars open now."""
        return {"mode": self.active_mode or self.mode, "open": [h._path for h in self._open]}

    @property
    def running(self) -> bool:
        """True between ``initialize()`` and the end of ``cleanup()`` (bars open now are shown)."""
        return self._state in ("running", "closing")

    # -- tasks ------------------------------------------------------------
    def task(self, name: str, total: float | None = None,
             description: str | None = None) -> ProgressTask | NullProgressTask:
        """A bar called ``name`` counting to ``total`` (None: unknown), as a context manager.

        ``with progress.task("epoch", total=10) as bar: ... bar.advance()``. A
        bar opened inside another is shown indented under it; when it closes it
        stays on screen (finished) until its parent opens another bar, which
        takes its row over - reusing it when the name is the same - so repeated
        inner loops do not pile up. Top-level bars stay until the display stops.
        """
        if self.active_mode == "none" or (self.mode == "none" and self._state == "new"):
            return NULL_TASK
        if self._state != "running":
            # Before initialize() or after cleanup(): count, show nothing.
            return ProgressTask(None, name, total, description)
        if self.active_mode == "plain":
            return _PlainTask(self, name, total, description)
        return ProgressTask(self, name, total, description)

    def progress_task(self, name: str, total: float | None = None,
                      description: str | None = None) -> Callable[[Callable[..., R]], Callable[..., R]]:
        """Decorate ``fn(task, total, *args, **kwargs)`` so each call runs inside a bar of this manager.

        See :func:`progress_task` for the calling convention.
        """
        return _progress_task_decorator(lambda: self, name, total, description)

    # -- bookkeeping (called by the handles) ----------------------------------
    def _open_task(self, handle: ProgressTask) -> None:
        if self._state != "running":
            handle._manager = None  # opened after cleanup(): show nothing
            return
        handle._started = time.monotonic()
        if self.active_mode == "plain":
            self._plain_open(handle)
        elif self._progress is not None:
            self._rich_open(handle, self._progress)
        self._open.append(handle)

    def _close_task(self, handle: ProgressTask) -> None:
        with contextlib.suppress(ValueError):
            self._open.remove(handle)
        if self.active_mode == "plain":
            self._plain_finish_line(handle)
        elif self._progress is not None:
            self._rich_close(handle, self._progress)
        if self._state == "closing" and not self._open:
            self._stop()

    # -- rich ---------------------------------------------------------------
    def _rich_open(self, handle: ProgressTask, progress: Any) -> None:
        description = "  " * handle.depth + handle.description
        parent = handle.parent
        reuse: ProgressTask | None = None
        if parent is not None:
            previous, parent._finished_child = parent._finished_child, None
            if previous is not None:
                if previous.name == handle.name:
                    reuse = previous
                else:
                    with contextlib.suppress(KeyError):
                        progress.remove_task(previous._task_id)
        if reuse is not None:
            handle._task_id = reuse._task_id
            progress.reset(handle._task_id, total=handle.total, completed=0, description=description,
                           visible=True, status=handle.status)
        else:
            handle._task_id = progress.add_task(description, total=handle.total, status=handle.status)

    def _rich_close(self, handle: ProgressTask, progress: Any) -> None:
        if handle.total is None or handle.completed > handle.total:
            # An iterable without a length: now we know it, so the bar reads full.
            handle.total = handle.completed
        progress.push(handle)
        with contextlib.suppress(KeyError):
            if handle.total is not None and handle.completed < handle.total:
                progress.stop_task(handle._task_id)  # left early: freeze its clock
        parent = handle.parent
        if parent is not None:
            if parent._open:
                parent._finished_child = handle
            else:  # the parent already closed (closed out of order): nobody will reuse the row
                with contextlib.suppress(KeyError):
                    progress.remove_task(handle._task_id)
        # Rows under a bar that closes go with it: only the bar's own row remains.
        child, handle._finished_child = handle._finished_child, None
        if child is not None:
            with contextlib.suppress(KeyError):
                progress.remove_task(child._task_id)

    # -- plain ----------------------------------------------------------------
    def _plain_open(self, handle: ProgressTask) -> None:
        # One line per bar *name path* per interval: a loop that reopens its
        # inner bar a thousand times prints like one long bar.
        handle._next_line = max(self._plain_next_line.get(handle._path, 0.0),
                                handle._started + self.plain_interval_s)

    def _plain_progress_line(self, handle: ProgressTask) -> None:
        now = time.monotonic()
        handle._next_line = now + self.plain_interval_s
        self._plain_next_line[handle._path] = handle._next_line
        self._plain_write(handle, now, done=False)

    def _plain_finish_line(self, handle: ProgressTask) -> None:
        now = time.monotonic()
        if handle.depth > 0 and now < self._plain_next_finish.get(handle._path, 0.0):
            return  # an inner loop that finishes often: one "done" line per interval
        self._plain_next_finish[handle._path] = now + self.plain_interval_s
        self._plain_write(handle, now, done=True)

    def _plain_write(self, handle: ProgressTask, now: float, *, done: bool) -> None:
        elapsed = now - handle._started
        count = f"{handle.completed:g}" if handle.total is None else f"{handle.completed:g}/{handle.total:g}"
        parts = [f"{'  ' * handle.depth}{handle._path}", count]
        if handle.total:
            parts.append(f"{100.0 * handle.completed / handle.total:.0f}%")
        parts.append(f"elapsed {_hms(elapsed)}")
        if done:
            parts.append("done")
        elif handle.total and handle.completed > 0:
            remaining = elapsed * (handle.total - handle.completed) / handle.completed
            parts.append(f"eta {_hms(remaining)}")
        if handle.status:
            parts.append(handle.status)
        line = " ".join(parts) + "\n"
        stream = self.stream if self.stream is not None else sys.stderr
        lock = self._write_lock or threading.Lock()
        with lock, contextlib.suppress(OSError, ValueError):  # a closed stream must not stop the run
            stream.write(line)
            stream.flush()


def _reroute_log_handlers(before: tuple[Any, Any], after: tuple[Any, Any],
                          ) -> list[tuple[logging.StreamHandler[Any], Any, Any]]:
    """Point logging handlers that write to the real stdout/stderr at the live display's proxies.

    Rich redirects ``sys.stdout``/``sys.stderr`` while a live display runs, so
    ``print`` lands above the bars. Logging handlers (Hydra's console handler
    among them) hold the stream they were configured with and would write
    straight through the display, tearing it; routing them through the same
    proxies keeps log lines above the bars too. Returns what to restore.
    """
    changed: list[tuple[logging.StreamHandler[Any], Any, Any]] = []
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


def _hms(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# -- the current manager ----------------------------------------------------------
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


def _progress_task_decorator(resolve: Callable[[], ProgressManager | None], name: str, total: float | None,
                             description: str | None) -> Callable[[Callable[..., R]], Callable[..., R]]:
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
                raise TypeError(f"{fn.__qualname__}() needs the bar's total as its first argument "
                                f"(or give progress_task(..., total=N))")
            manager = resolve()
            if manager is None:
                with use_progress() as standalone, standalone.task(name, bar_total, description) as bar:
                    return fn(bar, bar_total, *args, **kwargs)
            with manager.task(name, bar_total, description) as bar:
                return fn(bar, bar_total, *args, **kwargs)

        return wrapper

    return decorate


def progress_task(name: str, total: float | None = None,
                  description: str | None = None) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorate ``fn(task, total, *args, **kwargs)`` so each call runs inside a bar called ``name``.

    Calling convention of the decorated function:

    - ``progress_task(name)``: call it as ``f(total, *args, **kwargs)`` (or
      ``f(*args, total=N, **kwargs)``); it runs as ``fn(task, total, *args, **kwargs)``.
    - ``progress_task(name, total=N)``: call it as ``f(*args, **kwargs)``; it runs as
      ``fn(task, N, *args, **kwargs)``.

    ``task`` is the bar's handle (``task.advance()``, ``task.update(status=...)``).
    The bar goes to the current pipeline's manager (resolved at call time, not at
    decoration time), else to a standalone display for the duration of the call.
    ``ProgressManager.progress_task`` is the same, bound to one manager.
    """
    return _progress_task_decorator(get_progress_manager, name, total, description)
