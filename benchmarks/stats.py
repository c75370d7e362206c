"""Timing primitives shared by every measurement: statistics, A/B interleaving, timed subprocesses."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import REPO


@dataclass(frozen=True)
class Stats:
    """Median, min, max and count of a sample, in ``unit`` (``s``, ``ms``, ``us``, ``MiB``, ``/s``)."""

    median: float
    min: float
    max: float
    n: int
    unit: str = "s"
    mean: float | None = None
    p90: float | None = None

    def fmt(self, digits: int = 3) -> str:
        """``0.84 s [0.80–0.95] n=5``: the median with the min–max as the noise."""
        if self.n == 0:
            return "n/a"

        def num(x: float) -> str:
            return f"{x:.{digits}g}"

        if self.n == 1:
            return f"{num(self.median)} {self.unit}"
        return f"{num(self.median)} {self.unit} [{num(self.min)}–{num(self.max)}] n={self.n}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return asdict(self)


def summarize(values: Sequence[float], unit: str = "s", scale: float = 1.0) -> Stats:
    """The :class:`Stats` of ``values`` multiplied by ``scale`` (e.g. ``1e6`` for seconds -> µs)."""
    xs = sorted(v * scale for v in values)
    if not xs:
        return Stats(float("nan"), float("nan"), float("nan"), 0, unit)
    p90 = xs[min(len(xs) - 1, round(0.9 * (len(xs) - 1)))]
    return Stats(statistics.median(xs), xs[0], xs[-1], len(xs), unit, statistics.fmean(xs), p90)


def rounds(fns: Sequence[Callable[[], Any]], repeats: int, warmup: int = 1) -> list[list[Any]]:
    """Run ``fns`` in turn, A B C A B C ..., ``repeats`` times each; return one result list per function.

    ``warmup`` rounds run first and are discarded (cold page cache, first-time
    ``.pyc`` compilation). Alternating means drifting machine load (other jobs on a
    shared machine) hits every side alike.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    results: list[list[Any]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, results, strict=True):
            out.append(fn())
    return results


def interleave(a: Callable[[], Any], b: Callable[[], Any], repeats: int,
               warmup: int = 1) -> tuple[list[Any], list[Any]]:
    """``rounds`` of two: A B A B ...; returns both result lists."""
    results_a, results_b = rounds([a, b], repeats, warmup)
    return results_a, results_b


def child_env(pythonpath: Sequence[Path] = (REPO,), **extra: str) -> dict[str, str]:
    """The environment of a measured process: ``pythonpath`` importable, WandB offline, no colour.

    By default the repository is on the path (``benchmarks.probes`` targets,
    and the repository's ``hydra_plugins``). Python caches compiled modules
    as a user's machine does: a ``PYTHONDONTWRITEBYTECODE`` set around the
    harness (some sandboxes and CI images set it) would make every measured
    launch compile tipi's, the baselines' and the repository's sources anew.
    """
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([*map(str, pythonpath), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        NO_COLOR="1",
        TERM="dumb",
        COLUMNS="120",
        HYDRA_FULL_ERROR="0",
    )
    for var in ("TIPI_TRACEBACK", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "PYTHONDONTWRITEBYTECODE"):
        env.pop(var, None)
    env.update(extra)
    return env


@dataclass
class Timed:
    """A finished subprocess and its wall time (seconds, launch to exit)."""

    seconds: float
    returncode: int
    stdout: str
    stderr: str
    started: float  # time.time() just before launch, to compare with timestamps the child writes


def run_timed(cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
              stderr_path: Path | None = None) -> Timed:
    """Run ``cmd`` to completion and time it (stdout/stderr captured, or stderr to ``stderr_path``)."""
    started = time.time()
    t0 = time.perf_counter()
    if stderr_path is not None:
        with open(stderr_path, "w", encoding="utf-8") as err:
            proc = subprocess.run(list(cmd), cwd=cwd, env=env or child_env(), stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=err, text=True, timeout=timeout)
    else:
        proc = subprocess.run(list(cmd), cwd=cwd, env=env or child_env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    return Timed(seconds, proc.returncode, proc.stdout or "", proc.stderr or "", started)


class MeasurementError(RuntimeError):
    """A measured command did not do what the measurement needs (with its output, to debug it)."""


def check(timed: Timed, what: str, expect_rc: int | Sequence[int] = 0) -> Timed:
    """``timed`` if it exited with ``expect_rc``; otherwise a :class:`MeasurementError` with its output."""
    allowed = (expect_rc,) if isinstance(expect_rc, int) else tuple(expect_rc)
    if timed.returncode not in allowed:
        tail = "\n".join((timed.stdout + "\n" + timed.stderr).strip().splitlines()[-25:])
        raise MeasurementError(f"{what}: exit code {timed.returncode}, expected {allowed}\n{tail}")
    return timed


def python() -> str:
    """The interpreter the measured commands run with (the one running the harness)."""
    return sys.executable


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        info["load_avg_start"] = [round(x, 2) for x in os.getloadavg()]
    from importlib import metadata

    for dist in ("torch", "hydra-core", "omegaconf", "wandb", "rich", "submitit"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[dist] = metadata.version(dist)
    return info
