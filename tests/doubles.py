"""Recording doubles: permanences and processes that log every lifecycle call.

Used in-process (``events`` list) and from the CLI in a subprocess (a
``log_file`` that each call appends a line to).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, ClassVar

from tipi import Permanence, PipelineProcess


class Recorder:
    """Collects ``"<who>.<hook>"`` events in order, in memory and optionally in a file."""

    def __init__(self, log_file: str | None = None) -> None:
        self.events: list[str] = []
        self.log_file = log_file

    def __call__(self, event: str) -> None:
        self.events.append(event)
        if self.log_file:
            with open(self.log_file, "a", encoding="utf-8") as f:
                f.write(event + "\n")


class RecordingPermanence(Permanence):
    """A permanence whose hooks record themselves; ``fail_in`` names a hook that raises."""

    def __init__(self, name: str = "perm", fail_in: str | None = None, log_file: str | None = None,
                 recorder: Recorder | None = None) -> None:
        self.name = name
        self.fail_in = fail_in
        self.recorder = recorder or Recorder(log_file)

    def _hook(self, hook: str) -> None:
        self.recorder(f"{self.name}.{hook}")
        if self.fail_in == hook:
            raise RuntimeError(f"{self.name}.{hook} failed")

    def initialize(self) -> None:
        self._hook("initialize")

    def validate(self) -> None:
        self._hook("validate")

    def checkpoint(self) -> None:
        self._hook("checkpoint")

    def cleanup(self) -> None:
        self._hook("cleanup")


class RecordingProcess(PipelineProcess):
    """A process that records ``execute``; ``action`` makes it fail in a chosen way."""

    requires: ClassVar[dict[str, type]] = {}

    def __init__(self, controller: Any, force: bool = False, label: str = "proc", action: str = "ok",
                 log_file: str | None = None, done_marker: str | None = None, value: float = 1.0) -> None:
        super().__init__(controller, force)
        self.label = label
        self.action = action
        self.log_file = log_file
        self.done_marker = done_marker
        self.value = value

    def _record(self, event: str) -> None:
        perm = next((p for p in self.controller.permanences.values() if isinstance(p, RecordingPermanence)), None)
        recorder = perm.recorder if perm is not None else Recorder(self.log_file)
        recorder(event)

    def skip(self) -> bool:
        return bool(self.done_marker) and Path(self.done_marker).exists()

    def execute(self) -> float:
        self._record(f"{self.label}.execute")
        if self.action == "raise":
            raise ValueError(f"{self.label} broke")
        if self.action == "ctrl-c":
            raise KeyboardInterrupt
        if self.action == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
            self._record(f"{self.label}.after-signal")  # must never be reached
        if self.action == "sigterm-atomic":
            with self.controller.atomic():
                os.kill(os.getpid(), signal.SIGTERM)
                self._record(f"{self.label}.finished-step")  # reached: the signal waits for the step
        if self.done_marker:
            Path(self.done_marker).write_text("done")
        return self.value


class NeedsNetwork(PipelineProcess):
    """A process that asks for a permanence called ``network``."""

    requires: ClassVar[dict[str, type]] = {"network": Permanence}

    def execute(self) -> None:
        self.controller.get_permanence("network")
