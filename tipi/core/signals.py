"""Stop signals as exceptions that land on a step boundary.

One owner for signal deferral: :class:`SignalDeferral`. The controller holds
one and exposes its ``atomic()`` to processes; the executor installs
:meth:`SignalDeferral.handle` as the handler for the run. A signal that
arrives inside ``atomic()`` is kept and raised as :class:`Interrupted` when
the outermost block ends, so a training step is never cut in half.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from tipi.core.errors import Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# SLURM (through submitit) announces a timeout or preemption with SIGUSR2; we
# only take it over where someone installed a Python handler for it, and call
# that handler after our own checkpoint and cleanup.
REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


def raise_interrupt(signum: int) -> None:
    """Raise the ``Interrupted`` that stands for ``signum``."""
    raise Interrupted(signum, requeue=signum in REQUEUE_SIGNALS)


class SignalDeferral:
    """Holds back stop signals while a block runs, then raises the one that came."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None
        # Called when an outermost block completes, with the pending signal (or None); returns the one to
        # raise. Several processes running one run (DDP ranks) set it so that all stop after the same block.
        self.agree: Callable[[int | None], int | None] | None = None

    @property
    def deferring(self) -> bool:
        """True inside an ``atomic()`` block."""
        return self._depth > 0

    def atomic(self) -> SignalDeferral:
        """Defer stop signals until the outermost block ends; then raise the pending one.

        The deferral is its own context manager, re-entered by every block
        (nested blocks count their depth): a training step enters one a step,
        and an object allocated and torn down per step cost tens of
        microseconds of the step's own code (docs/performance.md).
        """
        return self

    def __enter__(self) -> None:
        self._depth += 1

    def __exit__(self, exc_type: type[BaseException] | None, _exc: BaseException | None, _tb: Any) -> None:
        signum: int | None = None
        if self._depth == 1:
            signum, self._pending = self._pending, None
            if exc_type is None and self.agree is not None:  # not while an error leaves the block
                # still deferring: a signal that arrives while agreeing waits for the next block
                signum = self.agree(signum)
        self._depth -= 1
        if signum is not None:
            raise_interrupt(signum)

    def handle(self, signum: int, _frame: FrameType | None = None) -> None:
        """A signal handler: keep ``signum`` inside ``atomic()``, raise it at once outside."""
        if self._depth > 0:
            self._pending = signum
            return
        raise_interrupt(signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[dict[int, Callable[..., Any]]]:
        """Route stop signals to :meth:`handle` for the block (main thread only).

        Yields the previously installed Python handlers by signal number, so a
        caller can chain them (submitit's requeue handler) after its own
        checkpoint and cleanup. A requeue signal is taken over only where
        someone installed a Python handler for it.
        """
        previous_handlers: dict[int, Callable[..., Any]] = {}
        if threading.current_thread() is not threading.main_thread():
            yield previous_handlers
            return
        installed: dict[int, Any] = {}
        for signum in STOP_SIGNALS + REQUEUE_SIGNALS:
            previous = signal.getsignal(signum)
            if signum in REQUEUE_SIGNALS and not callable(previous):
                continue
            installed[signum] = previous
            signal.signal(signum, self.handle)
        previous_handlers.update({s: h for s, h in installed.items() if callable(h)})
        try:
            yield previous_handlers
        finally:
            for number, handler in installed.items():
                signal.signal(number, handler if handler is not None else signal.SIG_DFL)
