"""One ``run.json`` for all ranks: rank 0 writes it; another rank that fails leaves its error beside it.

A rank other than 0 never writes ``run.json``. When it fails it writes
``rank<N>.error.json`` (the one-line error and when it happened) *before* it
tears down the process group, so rank 0, which then fails on the broken
connection, finds it and records the rank that failed first, not its own
"connection closed".
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

from tipi.core.record import RunRecord, RunStatus, atomic_write_text

ERROR_GLOB = "rank*.error.json"
# How long rank 0 waits for the error file of the rank whose failure broke its collective
_WAIT_FOR_PEERS_S = 3.0


def error_path(run_dir: Path, rank: int) -> Path:
    """``<run dir>/rank<N>.error.json``."""
    return Path(run_dir) / f"rank{rank}.error.json"


def write_rank_error(run_dir: Path, rank: int, error: str) -> None:
    """Leave this rank's error where rank 0 (and the starter) will look (never fails)."""
    with contextlib.suppress(OSError):
        atomic_write_text(
            error_path(run_dir, rank), json.dumps({"rank": rank, "time": time.time(), "error": error}) + "\n"
        )


def read_rank_errors(run_dir: Path) -> list[dict[str, Any]]:
    """Every rank's error file, the earliest first."""
    found = []
    for path in Path(run_dir).glob(ERROR_GLOB):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(entry, dict) and "error" in entry:
            found.append(entry)
    return sorted(found, key=lambda e: float(e.get("time", 0)))


def clear_rank_errors(run_dir: Path) -> None:
    """Forget the error files of an earlier attempt (a resumed run starts clean)."""
    for path in Path(run_dir).glob(ERROR_GLOB):
        path.unlink(missing_ok=True)


def first_failure(run_dir: Path, own_error: str | None, wait_s: float = 0.0) -> tuple[int, str] | None:
    """``(rank, error)`` of the rank that failed first, waiting up to ``wait_s`` for another rank's file."""
    deadline = time.monotonic() + wait_s
    others = read_rank_errors(run_dir)
    while not others and time.monotonic() < deadline:
        time.sleep(0.1)
        others = read_rank_errors(run_dir)
    if others:
        first = others[0]
        return int(first.get("rank", -1)), str(first["error"])
    return (0, own_error) if own_error else None


def wait_for_outcome(run_dir: Path, timeout_s: float = 30.0) -> None:
    """Wait (a moment) until rank 0 has recorded how the run ended."""
    deadline = time.monotonic() + timeout_s
    while (
        time.monotonic() < deadline
        and (RunRecord.load(Path(run_dir) / "run.json") or {}).get("status") == RunStatus.RUNNING
    ):
        time.sleep(0.05)


class RankRecord(RunRecord):
    """``run.json`` as one rank of a distributed run sees it: only rank 0 writes.

    ``fields`` are set on every save (the starter's ``argv``: a worker's own is
    the multiprocessing stub).
    """

    def __init__(self, run_dir: Path, rank: int, world_size: int, fields: dict[str, Any] | None = None) -> None:
        super().__init__(run_dir)
        self.rank = rank
        self.world_size = world_size
        self.fields = dict(fields or {})
        self.run_dir = Path(run_dir)
        if rank == 0:
            clear_rank_errors(self.run_dir)

    def owns_files(self) -> bool:
        """Rank 0 alone writes the run's files (``git.diff``): every rank would write the same."""
        return self.rank == 0

    def save(self) -> None:
        """Rank 0: rewrite ``run.json``; other ranks: nothing."""
        if self.rank != 0:
            return
        self.data.update(self.fields)
        super().save()

    def finish(
        self, status: str, *, objective: float | None = None, error: str | None = None, reason: str | None = None
    ) -> None:
        """Rank 0: finish with the first failing rank's error; another rank: leave its error file."""
        if self.rank != 0:
            if error:
                write_rank_error(self.run_dir, self.rank, error)
            elif status in (RunStatus.INTERRUPTED, RunStatus.REQUEUED):
                # every rank stopped after the same step; once one exits, the starter (torchrun's agent)
                # stops the rest: let rank 0 record the outcome first
                wait_for_outcome(self.run_dir)
            return
        if status != RunStatus.SUCCEEDED and self.world_size > 1:
            failure = first_failure(self.run_dir, error, wait_s=_WAIT_FOR_PEERS_S if error else 0.0)
            if failure is not None and (failure[0] != 0 or error):
                failed_rank, first_error = failure
                if failed_rank != 0:
                    self.data["rank_errors"] = read_rank_errors(self.run_dir)
                    status, error = RunStatus.FAILED, f"rank {failed_rank}: {first_error}"
        super().finish(status, objective=objective, error=error, reason=reason)
