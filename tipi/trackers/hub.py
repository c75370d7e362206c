"""The hub: hands every metric and figure to each tracker on one worker thread, and drops one that fails.

Training never waits for a tracker: :meth:`TrackerHub.metrics` puts a tuple
on a queue (a microsecond or two) and a daemon thread does the writing
(protobuf encoding, HTTP, SQLite). That thread wakes every ``flush_every``
seconds and works through what accumulated, then the trackers flush (a
tracker that batches sends one batch). Waking once a second rather than on
every ``put`` matters more than it seems: a writer busy in Python holds the
GIL, and each time the training thread lets go of it (a file write, a
tensor op) it may wait up to ``sys.getswitchinterval()`` (5 ms) to get it
back, so a writer woken on every step puts milliseconds on every step,
while one woken once a second touches a few steps a second.
``flush_every=0`` hands over every item at once (tests that need the order of events).

A tracker that raises is reported once (a warning naming it, and an entry in
:attr:`TrackerHub.failures`), released with ``abort()`` and never called
again; the others go on. ``finish()`` waits for the queue at most
``finish_timeout`` seconds, so a tracker whose server stopped answering
cannot hold the end of a run hostage.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tipi.core.errors import TipiError
from tipi.trackers.base import RunOutcome, Tracker, TrackerContext, TrackerFailed

log = logging.getLogger("tipi.trackers")

_STOP = ("stop",)


def first_line(exc: BaseException) -> str:
    """``TypeName: first line of the message``, for one-line reports."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class TrackerHub:
    """Runs a set of trackers on one worker thread.

    Args:
        trackers: name -> tracker (names are the keys under ``logger.trackers``).
        finish_timeout: seconds :meth:`finish` waits for pending writes and the
            trackers' own ``finish``; a tracker still busy then is reported failed.
        flush_every: seconds between the worker's rounds; 0: each item at once.
    """

    def __init__(self, trackers: Mapping[str, Tracker], finish_timeout: float = 60.0, flush_every: float = 1.0) -> None:
        self.trackers: dict[str, Tracker] = dict(trackers)
        for name, tracker in self.trackers.items():
            tracker.name = name
        self.finish_timeout = float(finish_timeout)
        self.flush_every = max(0.0, float(flush_every))
        self._wake = threading.Event()
        self.failures: dict[str, str] = {}
        self.finished: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    # -- main thread --------------------------------------------------------
    def start(self, context_for: Callable[[Tracker], TrackerContext]) -> dict[str, dict[str, Any]]:
        """Start every tracker (in order, on this thread); return their ``run.json`` entries.

        A tracker that cannot start fails the run before anything ran (its
        ``TipiError``, or a :class:`TrackerFailed` naming its key); the
        trackers already started are aborted.
        """
        started: list[Tracker] = []
        infos: dict[str, dict[str, Any]] = {}
        try:
            for name, tracker in self.trackers.items():
                try:
                    infos[name] = dict(tracker.start(context_for(tracker)) or {})
                except TipiError:
                    raise
                except Exception as exc:
                    raise TrackerFailed(
                        f"could not start: {first_line(exc)}",
                        key=tracker.key,
                        hint="Fix the tracker's settings, or leave it out of logger=[...].",
                    ) from exc
                started.append(tracker)
        except BaseException:
            for tracker in reversed(started):
                _quietly(tracker.abort)
            self.trackers.clear()
            raise
        if self.trackers:
            self._thread = threading.Thread(target=self._work, name="tipi-trackers", daemon=True)
            self._thread.start()
        return infos

    @property
    def active(self) -> bool:
        """Whether any tracker is still being fed."""
        return self._thread is not None

    def metrics(self, values: dict[str, Any], step: int, wall_time: float | None = None) -> None:
        """Queue ``values`` (plain numbers) at ``step``, logged at ``wall_time``, for every tracker."""
        if self._thread is not None:
            self._queue.put(("log_metrics", values, step, wall_time))

    def image(self, key: str, path: Path, step: int, caption: str | None) -> None:
        """Queue the image at ``path`` for every tracker."""
        if self._thread is not None:
            self._queue.put(("log_image", key, path, step, caption))

    def take_failures(self) -> dict[str, str]:
        """The failures so far (name -> one line); safe to call from any thread."""
        with self._lock:
            return dict(self.failures)

    def finish(self, outcome: RunOutcome) -> dict[str, dict[str, Any]]:
        """Send what is queued, finish every tracker, stop the thread; wait at most ``finish_timeout``."""
        thread, self._thread = self._thread, None
        if thread is None:
            return {}
        self._queue.put(("finish", outcome))
        self._queue.put(_STOP)
        self._wake.set()
        thread.join(self.finish_timeout)
        if thread.is_alive():
            with self._lock:
                for name in list(self.trackers):
                    if name not in self.finished and name not in self.failures:
                        self._report(name, f"still busy after finish_timeout={self.finish_timeout:g} s; abandoned")
        with self._lock:
            return {name: dict(info) for name, info in self.finished.items()}

    # -- worker thread ------------------------------------------------------
    def _work(self) -> None:
        while True:
            if self.flush_every > 0:
                self._wake.wait(self.flush_every)  # metrics() never sets it: no wake-up per step
                self._wake.clear()
                items = _drain(self._queue)
            else:
                items = [self._queue.get()]
            for item in items:
                if item is _STOP:
                    return
                if item[0] == "finish":
                    self._finish_all(item[1])
                else:
                    self._call_each(item[0], *item[1:])
            if items and self._queue.empty():
                self._call_each("flush")

    def _call_each(self, method: str, *args: Any) -> None:
        for name, tracker in list(self.trackers.items()):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # noqa: BLE001 - a tracker failing must not stop the run
                self._drop(name, tracker, f"{method}: {first_line(exc)}")

    def _finish_all(self, outcome: RunOutcome) -> None:
        self._call_each("flush")
        for name, tracker in list(self.trackers.items()):
            try:
                info = tracker.finish(outcome) or {}
            except Exception as exc:  # noqa: BLE001 - the others still finish
                self._drop(name, tracker, f"finish: {first_line(exc)}")
                continue
            with self._lock:
                self.finished[name] = dict(info)

    def _drop(self, name: str, tracker: Tracker, message: str) -> None:
        self.trackers.pop(name, None)
        _quietly(tracker.abort)
        with self._lock:
            self._report(name, message)

    def _report(self, name: str, message: str) -> None:
        """Record and log one failure (the caller holds the lock)."""
        if name in self.failures:
            return
        self.failures[name] = message
        log.warning("tracker '%s' failed and is dropped (the run and the other trackers go on): %s", name, message)


def _drain(items: queue.SimpleQueue[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Everything queued so far, without waiting."""
    out = []
    while True:
        try:
            out.append(items.get_nowait())
        except queue.Empty:
            return out


def _quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - releasing a broken tracker is best effort
        log.debug("ignored while releasing a tracker: %s", first_line(exc))
