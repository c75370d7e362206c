"""How ``tipi-runs multirun status`` reads SLURM's answers: array ids, and run.json against the scheduler."""

from __future__ import annotations

import pytest

from tipi.core.record import RunStatus
from tipi.runs.scan import top_level_block
from tipi.runs.scheduler import expand_job_id, resolve


@pytest.mark.parametrize("job_id, ids", [
    ("11_[0-2%4]", ["11_0", "11_1", "11_2"]),
    ("11_[1,3-4]", ["11_1", "11_3", "11_4"]),
    ("11_5", ["11_5"]),
    ("12", ["12"]),
])
def test_sacct_array_rows_stand_for_each_task(job_id: str, ids: list[str]) -> None:
    assert expand_job_id(job_id) == ids


@pytest.mark.parametrize("record, state, status", [
    ("succeeded", "CANCELLED", RunStatus.SUCCEEDED),      # the run ended on its own: run.json wins
    ("failed", "FAILED", RunStatus.FAILED),
    (None, "PENDING", RunStatus.PENDING),                  # queued, nothing written yet
    ("interrupted", "PENDING", RunStatus.REQUEUED),        # checkpointed, back in the queue
    ("running", "RUNNING", RunStatus.RUNNING),
    ("interrupted", "CANCELLED", RunStatus.CANCELLED),     # scancel: SIGTERM, checkpoint, gone
    ("running", "OUT_OF_MEMORY", RunStatus.FAILED),        # killed outside tipi
    ("running", "COMPLETED", RunStatus.LOST),              # ended without closing its record
    ("running", None, RunStatus.LOST),                     # the scheduler forgot it
    (None, None, RunStatus.CORRUPT),                       # nothing on disk, nothing in the queue
])
def test_run_json_and_the_scheduler_tell_the_status_apart(record: str | None, state: str | None,
                                                          status: RunStatus) -> None:
    assert resolve(record, state, slurm=True)[0] == status


def test_a_job_just_submitted_that_accounting_does_not_know_yet_is_pending() -> None:
    assert resolve(None, None, slurm=True, just_submitted=True)[0] == RunStatus.PENDING
    assert resolve("running", None, slurm=True, just_submitted=True)[0] == RunStatus.LOST


def test_the_run_block_is_read_without_parsing_the_whole_config() -> None:
    text = "seed: 1\nrun:\n  name: x\n  tags:\n  - a\n  - b\n  objective_mode: min\npermanences:\n  run: {}\n"
    assert top_level_block(text, "run") == {"name": "x", "tags": ["a", "b"], "objective_mode": "min"}
    assert top_level_block(text, "missing") is None
