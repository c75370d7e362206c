"""The executor: runs the processes of a controller, with a lifecycle that holds.

initialize all -> validate all -> for each process: skip()? unless force ->
execute() -> checkpoint all; on Ctrl-C / SIGTERM / a SLURM signal: checkpoint;
always: cleanup in reverse order. Modelled on Hydra's ``run_job`` teardown.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from tipi.core.context import current_controller
from tipi.core.controller import PipelineController
from tipi.core.errors import Interrupted

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# SLURM (through submitit) announces a timeout or preemption with SIGUSR2; we
# only take it over where someone installed a Python handler for it, and call
# that handler after our own checkpoint and cleanup.
REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


def raise_interrupt(signum: int) -> None:
    """Raise the ``Interrupted`` that stands for ``signum``."""
    raise Interrupted(signum, requeue=signum in REQUEUE_SIGNALS)


class _NullTask:
    """Progress handle used when a pipeline has no progress permanence."""

    def advance(self, n: float = 1) -> None:
        """Do nothing."""

    def update(self, **_: Any) -> None:
        """Do nothing."""


class PipelineExecutor:
    """Runs a controller's processes once; ``run()`` returns their results by name."""

    def __init__(self, controller: PipelineController) -> None:
        self.controller = controller
        self.previous_handlers: dict[int, Any] = {}

    def run(self) -> dict[str, Any]:
        """Initialize, validate, execute every process, checkpoint; always clean up."""
        controller = self.controller
        token = current_controller.set(controller)
        try:
            with self._signals():
                try:
                    controller.initialize_permanences()
                    controller.validate_permanences()
                    self._run_processes()
                except KeyboardInterrupt as exc:
                    interrupted = Interrupted(signal.SIGINT)
                    self._checkpoint_after_interrupt(interrupted)
                    raise interrupted from exc
                except Interrupted as exc:
                    self._checkpoint_after_interrupt(exc)
                    raise
                except BaseException as exc:
                    self._cleanup_attached(exc)
                    raise
                self._cleanup_attached(None)
        finally:
            current_controller.reset(token)
        return controller.results

    def _run_processes(self) -> None:
        controller = self.controller
        with self._task("overall", total=len(controller.process_specs)) as overall:
            for process in controller.iterate_processes():
                name = process.name  # type: ignore[attr-defined]
                overall.update(status=name)
                if not process.force and process.skip():
                    log.info("process %s: outputs exist, skipped (force=true runs it again)", name)
                    controller.results[name] = None
                else:
                    controller.results[name] = process.execute()
                    controller.checkpoint_permanences()
                overall.advance()
            overall.update(status="done")

    def _checkpoint_after_interrupt(self, exc: Interrupted) -> None:
        try:
            self.controller.checkpoint_permanences()
        except BaseException as ckpt_exc:  # noqa: BLE001 - the interrupt stays the error
            exc.add_note(f"checkpoint on interrupt failed: {ckpt_exc!r}")
        self._cleanup_attached(exc)
        previous = self.previous_handlers.get(exc.signum)
        # Python's own Ctrl-C handler would only raise KeyboardInterrupt over the clean exit (130).
        exc.chain = None if previous is signal.default_int_handler else previous  # type: ignore[attr-defined]

    def _cleanup_attached(self, exc: BaseException | None) -> None:
        """Clean up; attach cleanup errors to ``exc``, or raise the first if the run succeeded."""
        names = [n for n in self.controller._initialized]  # noqa: SLF001 - executor and controller work as a pair
        with self._task("cleanup", total=len(names)) as bar:
            errors = self.controller.cleanup()
            bar.advance(len(names))
        if not errors:
            return
        if exc is None:
            first = errors[0]
            for other in errors[1:]:
                first.add_note(f"also: {other}")
            raise first
        PipelineController._attach_cleanup_errors(exc, errors)  # noqa: SLF001

    @contextlib.contextmanager
    def _task(self, name: str, total: int) -> Iterator[Any]:
        """A bar of the ``progress`` permanence when there is an initialized one."""
        progress = self.controller.permanences.get("progress")
        if progress is None or not hasattr(progress, "task") or "progress" not in self.controller._initialized:  # noqa: SLF001
            yield _NullTask()
            return
        with progress.task(name, total=total) as handle:
            yield handle

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """Route stop signals to ``Interrupted``, deferred inside ``controller.atomic()``."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: FrameType | None) -> None:
            if self.controller._defer_depth > 0:  # noqa: SLF001
                self.controller._pending_signal = signum  # noqa: SLF001
                return
            raise_interrupt(signum)

        installed: dict[int, Any] = {}
        for signum in STOP_SIGNALS + REQUEUE_SIGNALS:
            previous = signal.getsignal(signum)
            if signum in REQUEUE_SIGNALS and not callable(previous):
                continue
            installed[signum] = previous
            signal.signal(signum, handler)
        self.previous_handlers = {s: h for s, h in installed.items() if callable(h)}
        try:
            yield
        finally:
            for signum, previous in installed.items():
                signal.signal(signum, previous if previous is not None else signal.SIG_DFL)


def chain_previous_handler(exc: Interrupted) -> Callable[[], None] | None:
    """The previously installed handler for ``exc``'s signal (submitit's requeue), if any."""
    handler = getattr(exc, "chain", None)
    if handler is None:
        return None
    return lambda: handler(exc.signum, None)
