"""The unit tier starts no process: a test here that tries fails, naming what it started.

Tests that run the CLI, a launcher, a worker or any other program belong in
``tests/integration`` or ``tests/reliability`` (marked ``slow`` by folder).
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest


class ProcessStarted(AssertionError):
    """A unit test started a process."""


# Not the test's own: joblib's loky (under W&B's sweep engine, through scikit-learn) asks lscpu for the cores.
LIBRARY_PROBES = {"lscpu"}


@pytest.fixture(autouse=True)
def _no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    popen_init = subprocess.Popen.__init__

    def refuse(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        if args in LIBRARY_PROBES:
            popen_init(self, args, *rest, **kwargs)
            return
        raise ProcessStarted(f"a unit test may start no process; this one started {args!r}: move it to integration/")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
