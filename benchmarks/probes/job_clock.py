"""A Hydra callback that timestamps every job and reads the resident memory at each job's end.

Added to tipi and to the bare Hydra app alike with
``+hydra.callbacks.bench_clock._target_=benchmarks.probes.job_clock.JobClock
+hydra.callbacks.bench_clock.out=<file.json>``. It keeps everything in memory
and writes one JSON file when the multirun ends (or at exit, if a job failed),
so the jobs it times do no extra I/O.
"""

from __future__ import annotations

import atexit
import json
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback


def rss_kib() -> int | None:
    """This process's resident set size in KiB (Linux ``/proc/self/status``), or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class JobClock(Callback):
    """Records ``time.perf_counter()`` at multirun start and at each job's start and end, and RSS at each end."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.data: dict[str, Any] = {"multirun_start": None, "job_start": [], "job_end": [], "rss_kib": []}
        self._written = False
        atexit.register(self.write)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self.data["multirun_start"] = time.perf_counter()

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        self.data["job_start"].append(time.perf_counter())

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        self.data["job_end"].append(time.perf_counter())
        self.data["rss_kib"].append(rss_kib())

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        self.data["multirun_end"] = time.perf_counter()
        self.write()

    def write(self) -> None:
        """Write the timestamps once."""
        if self._written:
            return
        self._written = True
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.data), encoding="utf-8")
