"""The executor: runs the processes of a controller, with a lifecycle that holds.

initialize all -> validate all -> for each process: skip()? unless force ->
execute() -> checkpoint all; on Ctrl-C / SIGTERM / a SLURM signal: checkpoint;
always: cleanup in reverse order. Modelled on Hydra's ``run_job`` teardown.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from typing import Any

from tipi.core.context import current_controller
from tipi.core.controller import PipelineController, attach_cleanup_errors
from tipi.core.errors import Interrupted
from tipi.core.progress import NULL_TASK

log = logging.getLogger(__name__)


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
            with controller.signals.installed() as previous_handlers:
                self.previous_handlers = previous_handlers
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
                name = process.name  # type: ignore[attr-defined]  # set by the controller when it constructs the process
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
        except BaseException as ckpt_exc:  # noqa: BLE001 - the interrupt stays the error the user sees
            exc.add_note(f"checkpoint on interrupt failed: {ckpt_exc!r}")
        self._cleanup_attached(exc)
        previous = self.previous_handlers.get(exc.signum)
        # Python's own Ctrl-C handler would only raise KeyboardInterrupt over the clean exit (130).
        exc.chain = None if previous is signal.default_int_handler else previous  # type: ignore[attr-defined]  # Interrupted carries the handler to chain; set here, read by the runner

    def _cleanup_attached(self, exc: BaseException | None) -> None:
        """Clean up; attach cleanup errors to ``exc``, or raise the first if the run succeeded."""
        names = self.controller.initialized
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
        attach_cleanup_errors(exc, errors)

    @contextlib.contextmanager
    def _task(self, name: str, total: int) -> Iterator[Any]:
        """A bar of the ``progress`` permanence when there is an initialized one."""
        progress = self.controller.permanences.get("progress")
        if progress is None or not hasattr(progress, "task") or "progress" not in self.controller.initialized:
            yield NULL_TASK
            return
        with progress.task(name, total=total) as handle:
            yield handle


def chain_previous_handler(exc: Interrupted) -> Callable[[], None] | None:
    """The previously installed handler for ``exc``'s signal (submitit's requeue), if any."""
    handler = getattr(exc, "chain", None)
    if handler is None:
        return None
    return lambda: handler(exc.signum, None)
