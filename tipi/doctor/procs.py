"""Every process the doctor starts: bounded by a timeout, killed with its children when it runs over.

torch and torchvision are only ever imported in these child processes, so a
broken install (a crash on import, a CUDA driver that hangs) costs a row of
the table, not the doctor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The worker prints its answer on a line of its own, after anything a library may print.
RESULT_PREFIX = "TIPI-DOCTOR-RESULT "


@dataclass
class ChildResult:
    """What a child process did: its answer (parsed), or why there is none."""

    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> str | None:
        """One line on why the process gave no answer, or None when it did."""
        if self.timed_out:
            return "no answer within the timeout (killed)"
        if self.data.get("error"):
            return str(self.data["error"])
        if self.returncode is not None and self.returncode < 0:
            return f"crashed ({_signal_name(-self.returncode)}){_last_line(self.stderr)}"
        if self.returncode != 0:
            return f"exited {self.returncode}{_last_line(self.stderr)}"
        return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f": {lines[-1][:300]}" if lines else ""


def child_env(**extra: str) -> dict[str, str]:
    """This environment, with the directory holding ``tipi`` first on ``PYTHONPATH`` (a source checkout works)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def _finish(proc: subprocess.Popen[str], timeout: float) -> ChildResult:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        out, err = proc.communicate()
        return ChildResult(proc.returncode, out, err, timed_out=True)
    outcome = ChildResult(proc.returncode, out, err)
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            outcome.data = json.loads(line[len(RESULT_PREFIX) :])
            break
    return outcome


def _kill(proc: subprocess.Popen[str]) -> None:
    """Kill the child's whole process group (it was started in its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def start_worker(task: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python -m tipi.doctor.worker task args...`` in its own session."""
    return subprocess.Popen(
        [sys.executable, "-m", "tipi.doctor.worker", task, *args],
        env=env or child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def run_worker(task: str, *args: str, timeout: float) -> ChildResult:
    """Run one worker task to its end or to ``timeout`` seconds."""
    return _finish(start_worker(task, *args), timeout)


def wait_all(procs: list[subprocess.Popen[str]], timeout: float) -> list[ChildResult]:
    """Wait for several workers sharing one deadline; any still running then is killed."""
    import time

    deadline = time.monotonic() + timeout
    return [_finish(p, max(0.1, deadline - time.monotonic())) for p in procs]


def run_command(argv: list[str], timeout: float) -> ChildResult:
    """Run a command (``sinfo``, ``sacct``) to its end or to ``timeout`` seconds; not found is exit 127."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    except OSError as exc:
        return ChildResult(127, stderr=str(exc))
    return _finish(proc, timeout)
