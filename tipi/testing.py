"""The lifecycle contract as a test kit: every built-in permanence and process passes it, and so can yours.

Like Hydra's ``LauncherTestSuite`` holds every launcher to one contract, these
checks hold a permanence or a process to DESIGN.md's engine contract, through
the real controller and executor:

- :func:`check_permanence`: its hooks run once each and in order
  (initialize -> validate -> checkpoint -> cleanup), ``get_state()`` is JSON;
  ``checkpoint()`` round-trips: a fresh instance initialized in the same run
  directory reports the same state; ``cleanup()`` runs after a process fails,
  and after a later permanence fails to initialize, and the user sees the
  original error.
- :func:`check_process`: it executes after every permanence is initialized and
  validated, the permanences are checkpointed after it (and, if it says so,
  while it runs), and when it raises,
  every permanence is cleaned up and its error is the one raised.

Use it from pytest (``docs/journey.md``, "Check your own permanence")::

    from tipi.testing import check_permanence

    def test_my_store_keeps_the_contract(tmp_path):
        check_permanence(lambda: {"store": MyStore(path="s.db")}, "store", tmp_path)

``build`` returns the permanences the subject needs, itself among them, in
build order; it is called once per check, so each check starts fresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tipi.core.context import RunContext
from tipi.core.controller import PipelineController
from tipi.core.executor import PipelineExecutor
from tipi.core.permanence import Permanence
from tipi.core.process import PipelineProcess, ProcessSpec

__all__ = ["ContractBroken", "check_permanence", "check_process"]

Permanences = Callable[[], Mapping[str, Permanence | None]]
HOOKS = ("initialize", "validate", "checkpoint", "cleanup")


class ContractBroken(AssertionError):
    """A permanence or process does not keep the lifecycle contract; the message says which part."""


class _Noop(PipelineProcess):
    """A step that does nothing: the permanences' lifecycle around it is what is checked."""

    def execute(self) -> None:
        """Nothing."""


class _Fails(PipelineProcess):
    """A step that raises :class:`_Failure`."""

    def execute(self) -> None:
        """Raise."""
        raise _Failure("the conformance check's own failure")


class _Failure(RuntimeError):
    """The error a check raises on purpose."""


class _FailsToInitialize(Permanence):
    """A permanence whose ``initialize`` raises (built after the subject)."""

    def initialize(self) -> None:
        raise _Failure("a later permanence failed to initialize")

    def cleanup(self) -> None:
        """Nothing to release."""


@contextmanager
def _recorded(permanence: Permanence, events: list[str]) -> Iterator[None]:
    """Record each lifecycle hook of ``permanence`` (an instance attribute shadows the method for a while)."""
    for hook in HOOKS:
        method = getattr(permanence, hook)

        def recording(*args: Any, _hook: str = hook, _method: Any = method, **kwargs: Any) -> Any:
            events.append(_hook)
            return _method(*args, **kwargs)

        permanence.__dict__[hook] = recording
    try:
        yield
    finally:
        for hook in HOOKS:
            permanence.__dict__.pop(hook, None)


def _run(permanences: Mapping[str, Permanence | None], specs: list[ProcessSpec], run_dir: Path) -> PipelineController:
    controller = PipelineController(permanences, specs, RunContext(run_dir=run_dir))
    PipelineExecutor(controller).run()
    return controller


def _subject(permanences: Mapping[str, Permanence | None], name: str) -> Permanence:
    subject = permanences.get(name)
    if not isinstance(subject, Permanence):
        raise ContractBroken(f"build() returned no permanence named '{name}' (it returned {sorted(permanences)})")
    return subject


def _state(subject: Permanence, name: str) -> dict[str, Any]:
    state = subject.get_state()
    try:
        return dict(json.loads(json.dumps(state)))
    except (TypeError, ValueError) as exc:
        raise ContractBroken(f"{name}.get_state() is not JSON: {exc}") from None


def check_permanence(build: Permanences, name: str, run_dir: Path) -> None:
    """Hold the permanence ``name`` of ``build()`` to the lifecycle contract; a :class:`ContractBroken` if not."""
    run_dir = Path(run_dir)
    # 1. hooks once each, in order, through the real executor
    permanences, events = build(), list[str]()
    subject = _subject(permanences, name)
    with _recorded(subject, events):
        _run(permanences, [ProcessSpec(_Noop, name="noop")], run_dir)
    if events != ["initialize", "validate", "checkpoint", "cleanup"]:
        raise ContractBroken(f"{name}: hooks ran as {events}, not initialize, validate, checkpoint, cleanup")
    # 2. checkpoint round trip: a fresh instance in the same run directory comes back to the same state
    permanences = build()
    subject = _subject(permanences, name)
    controller = PipelineController(permanences, [ProcessSpec(_Noop, name="noop")], RunContext(run_dir=run_dir))
    try:
        controller.initialize_permanences()
        controller.checkpoint_permanences()
        saved = _state(subject, name)
    finally:
        controller.cleanup()
    again = build()
    fresh = _subject(again, name)
    controller = PipelineController(again, [], RunContext(run_dir=run_dir))
    try:
        controller.initialize_permanences()
        restored = _state(fresh, name)
    finally:
        controller.cleanup()
    if restored != saved:
        raise ContractBroken(
            f"{name}: state after checkpoint {saved}, after a fresh initialize in the same run directory {restored}"
        )
    # 3. cleanup after a process fails, and after a later permanence fails to initialize
    for specs, extra, why in (
        ([ProcessSpec(_Fails, name="fails")], {}, "a process failed"),
        ([ProcessSpec(_Noop, name="noop")], {"zz_fails": _FailsToInitialize()}, "a later permanence failed"),
    ):
        permanences, events = {**build(), **extra}, []
        subject = _subject(permanences, name)
        with _recorded(subject, events):
            try:
                _run(permanences, specs, run_dir)
            except _Failure:
                pass
            else:
                raise ContractBroken(f"{name}: the failure ({why}) did not reach the caller")
        if events.count("cleanup") != 1 or events[-1] != "cleanup":
            raise ContractBroken(f"{name}: after {why}, hooks ran as {events} (cleanup once, last)")


def check_process(build: Permanences, spec: ProcessSpec, run_dir: Path, *, failing: ProcessSpec | None = None) -> None:
    """Hold the process of ``spec`` to the contract, with the permanences of ``build()``; ``ContractBroken`` if not.

    ``failing``, where given, is a spec of the same process set up to raise
    (a bad input it must refuse): every permanence must then be cleaned up and
    the process's own error reach the caller.
    """
    run_dir = Path(run_dir)
    permanences, events = build(), []

    class Watch(Permanence):
        """Records when the process runs relative to the lifecycle of the others."""

        def initialize(self) -> None:
            events.append("initialize")

        def validate(self) -> None:
            events.append("validate")

        def checkpoint(self) -> None:
            events.append("checkpoint")

        def cleanup(self) -> None:
            events.append("cleanup")

    def execute(process: PipelineProcess) -> Any:
        events.append("execute")
        return spec.cls.execute(process)

    recorded = type(spec.cls.__name__, (spec.cls,), {"execute": execute})  # the process, its execute recorded
    watched = {**permanences, "zz_watch": Watch()}
    controller = PipelineController(watched, [ProcessSpec(recorded, spec.params, spec.name)], RunContext(run_dir))
    PipelineExecutor(controller).run()
    # a process may checkpoint while it runs (train does, every epoch); the one after it is the executor's
    if (
        events[:3] != ["initialize", "validate", "execute"]
        or events[-2:] != ["checkpoint", "cleanup"]
        or set(events[3:-1]) != {"checkpoint"}
    ):
        raise ContractBroken(f"{spec.name}: the lifecycle around it ran as {events}")
    if failing is None:
        return
    events.clear()
    watched = {**build(), "zz_watch": Watch()}
    try:
        PipelineExecutor(PipelineController(watched, [failing], RunContext(run_dir=run_dir))).run()
    except Exception as exc:  # whatever it raised must be its own error, after cleanup
        if "cleanup" not in events:
            raise ContractBroken(f"{failing.name}: it raised {type(exc).__name__}, but nothing was cleaned up") from exc
    else:
        raise ContractBroken(f"{failing.name}: set up to fail, it did not raise")
