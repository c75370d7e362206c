"""What every check shares: the options, and the torch probe (run once, in a worker, for all checks)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tipi.doctor.procs import ChildResult, run_worker


@dataclass
class Options:
    """How the doctor runs.

    Args:
        timeout: seconds any one step (a worker process, a command) may take before it is killed.
        smoke: run the smoke training and the all-reduce steps (they import torch, in workers).
        net_timeout: seconds to wait for a network connection (WandB's server).
        cwd: where a run would write ``outputs/`` and ``multirun/``.
    """

    timeout: float = 60.0
    smoke: bool = True
    net_timeout: float = 5.0
    cwd: Path = field(default_factory=Path.cwd)


class DoctorContext:
    """Passed to every check; ``torch()`` runs the torch probe the first time any check asks."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._torch: ChildResult | None = None

    def torch(self) -> ChildResult:
        """The ``torch`` worker's outcome: build, versions, devices (``data``), or its ``error``."""
        with self._lock:
            if self._torch is None:
                self._torch = run_worker("torch", timeout=self.options.timeout)
            return self._torch

    def torch_data(self) -> dict[str, Any] | None:
        """The torch probe's answer, or None when torch could not be probed."""
        outcome = self.torch()
        return None if outcome.error else outcome.data

    def cuda_devices(self) -> list[dict[str, Any]]:
        """The CUDA devices the probe found (empty when none, or when torch did not load)."""
        data = self.torch_data()
        return list(data.get("cuda_devices", [])) if data else []
