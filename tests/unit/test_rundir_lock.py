"""A run directory's lock, an unreadable run.json, and resume overrides, in-process (no process started).

"Another process" here is another open file description of the lock file in
this process: ``flock`` belongs to the open file, so a second descriptor of
ours conflicts exactly as another process would (a POSIX ``lockf`` would not:
its locks belong to the process), and the run.json it would have written
names it. The test with two real processes, and a SIGKILL, is
``tests/reliability/test_nothing_lost.py``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from tipi.core import lock as lock_module
from tipi.core.errors import ConfigError
from tipi.core.lock import LOCK_NAME, LockHeld, acquire, holder
from tipi.core.record import RunRecord
from tipi.core.recover import rebuild
from tipi.core.resume import apply_resume_overrides
from tipi.core.rundir import RunDirBusy, RunDirTaken, check_free, check_not_running, own

HOST = socket.gethostname()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settle and grace times of a few polls, not seconds."""
    monkeypatch.setattr(lock_module, "_SETTLE_S", 0.05)
    monkeypatch.setattr(lock_module, "_GONE_GRACE_S", 0.1)


def running_record(pid: int, host: str = HOST, start: str = "2026-12-02T09:00:00+00:00",
                   slurm: dict[str, str] | None = None) -> dict[str, Any]:
    """The run.json a process running in a directory has written."""
    attempt: dict[str, Any] = {"start": start, "status": "running", "host": host}
    if slurm:
        attempt["slurm"] = slurm
    return {"status": "running", "pid": pid, "host": host, "started": "2026-12-01T00:00:00+00:00",
            "attempts": [attempt], "overrides": ["seed=1"]}


@contextlib.contextmanager
def other_holder(run_dir: Path, record: dict[str, Any] | None) -> Iterator[int]:
    """Hold ``run_dir``'s lock through a descriptor of our own, as another process would, with its ``record``."""
    if record is not None:
        (run_dir / "run.json").write_text(json.dumps(record))
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        yield fd
    finally:
        os.close(fd)


@pytest.fixture
def held(run_dir: Path) -> Iterator[int]:
    """``run_dir`` held by pid 1 (alive, not ours) on this host since a known time."""
    with other_holder(run_dir, running_record(1)) as fd:
        yield fd


# -- the lock -----------------------------------------------------------------


def test_a_held_lock_conflicts_with_another_descriptor_in_the_same_process(run_dir: Path) -> None:
    lock = acquire(run_dir)
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a POSIX lock would not see it: why flock
        finally:
            os.close(fd)  # and closing another descriptor of the file leaves the flock in place
        assert holder(run_dir) is None, "this process's own lock is not another's"
    finally:
        lock.release()
    assert (run_dir / LOCK_NAME).read_bytes() == b"", "the file stays, empty: it takes no space"
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # and free
    finally:
        os.close(fd)


def test_nested_acquires_share_one_lock_and_the_outermost_releases(run_dir: Path) -> None:
    outer = acquire(run_dir)
    inner = acquire(run_dir)
    assert inner is outer
    inner.release()
    assert outer.locked
    outer.release()
    assert not outer.locked
    acquire(run_dir).release()


def test_a_directory_another_holds_is_refused_naming_pid_host_and_start(run_dir: Path, held: int) -> None:
    with pytest.raises(LockHeld) as info:
        acquire(run_dir)
    assert info.value.owner is not None and info.value.owner.pid == 1
    expected = f"'{run_dir}' is running in pid 1 on host {HOST} since 2026-12-02T09:00:00+00:00; wait, or stop it first"
    with pytest.raises(RunDirBusy) as busy:
        own(run_dir, key="resume")
    assert busy.value.key == "resume" and busy.value.message == expected
    assert busy.value.hint is not None and "`kill 1`" in busy.value.hint and f"resume={run_dir}" in busy.value.hint
    # a fresh run into it (another command, or the same) is refused the same way, and not advised to resume it
    for check in (lambda: check_not_running(run_dir), lambda: check_free(run_dir, ["seed=2"]),
                  lambda: check_free(run_dir, ["seed=1"])):
        with pytest.raises(RunDirBusy) as fresh:
            check()
        assert fresh.value.key == "hydra.run.dir" and fresh.value.message == expected
        assert fresh.value.hint is not None and "resume=" not in fresh.value.hint
    assert isinstance(fresh.value, RunDirTaken), "the output-directory callback, which catches RunDirTaken, stops it"


def test_a_slurm_owner_on_another_node_is_stopped_with_scancel(run_dir: Path) -> None:
    slurm = {"slurm_array_job_id": "4242", "slurm_array_task_id": "3"}
    with other_holder(run_dir, running_record(1, host="gpu07", slurm=slurm)), pytest.raises(RunDirBusy) as busy:
        own(run_dir)
    assert "pid 1 on host gpu07 since 2026-12-02T09:00:00+00:00 (SLURM job 4242_3)" in busy.value.message
    assert busy.value.hint is not None and "`scancel 4242_3`" in busy.value.hint


@pytest.mark.usefixtures("quick")
def test_a_holder_that_has_not_written_run_json_yet_is_still_refused(run_dir: Path) -> None:
    (run_dir / "run.json").write_text(json.dumps({**running_record(1), "status": "interrupted"}))  # the last attempt's
    with other_holder(run_dir, None), pytest.raises(RunDirBusy) as busy:
        own(run_dir, key="resume")
    assert busy.value.message == (f"'{run_dir}' is running in another process, which has not recorded itself in "
                                  "run.json yet; wait, or stop it first")


@pytest.mark.usefixtures("quick")
def test_a_lock_left_with_a_process_that_has_ended_is_still_refused_after_a_grace(run_dir: Path) -> None:
    dead = 2**22 + 12345  # above pid_max's default: no such process
    with other_holder(run_dir, running_record(dead)):
        start = time.monotonic()
        with pytest.raises(RunDirBusy) as busy:
            own(run_dir)
        assert time.monotonic() - start >= lock_module._GONE_GRACE_S
    assert (f"(pid {dead} has ended, yet the lock is held: by a process it started, or one not recorded yet)"
            in busy.value.message)


def test_a_killed_runs_record_does_not_block_once_the_lock_is_free(run_dir: Path) -> None:
    (run_dir / "run.json").write_text(json.dumps(running_record(1)))  # SIGKILLed: run.json still says running
    acquire(run_dir).release()  # the lock file of that run, now free
    assert holder(run_dir) is None
    check_free(run_dir, ["seed=1"])  # the same command again continues it
    with pytest.raises(RunDirTaken) as taken:
        check_free(run_dir, ["seed=2"])
    assert not isinstance(taken.value, RunDirBusy) and f"resume={run_dir}" in str(taken.value)
    own(run_dir).release()


def test_a_brief_conflict_with_a_probe_is_waited_out(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_flock = fcntl.flock
    conflicts = iter([True, True])

    def flock(fd: int, op: int) -> None:  # the first two tries meet a probe's shared lock
        if op & fcntl.LOCK_EX and next(conflicts, False):
            raise BlockingIOError(errno.EWOULDBLOCK, "Resource temporarily unavailable")
        real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    (run_dir / "run.json").write_text(json.dumps(running_record(1)))  # an old record naming a live pid
    own(run_dir).release()


def test_a_forked_child_drops_its_copy_and_the_parent_keeps_the_lock(run_dir: Path) -> None:
    lock = acquire(run_dir)
    assert lock.fd is not None
    parents_copy = os.dup(lock.fd)  # a fork duplicates the descriptor; the parent keeps its own
    lock_module._forget_in_child()  # what the child runs after os.fork (a DataLoader worker)
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDWR)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(parents_copy)  # the parent's death
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: no child copy holds it any more
    os.close(fd)


def test_a_file_system_without_locks_runs_unguarded_with_one_warning(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING, logger="tipi.core.lock"):
        lock = own(run_dir)
    assert not lock.locked and lock.error == "No locks available"
    assert "cannot lock" in caplog.text and "No locks available" in caplog.text
    assert holder(run_dir) is None
    lock.release()


def test_probing_a_directory_writes_nothing(run_dir: Path) -> None:
    check_not_running(run_dir)
    check_free(run_dir, ["seed=1"])
    assert list(run_dir.iterdir()) == [], "no lock file is created by a check"


def test_the_lock_costs_well_under_a_millisecond(run_dir: Path) -> None:
    times = []
    for _ in range(300):
        start = time.perf_counter()
        own(run_dir).release()
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 1e-3, f"median {statistics.median(times) * 1e6:.0f} us"


# -- an unreadable run.json ---------------------------------------------------------


def test_an_unreadable_run_json_is_set_aside_before_it_would_be_overwritten(run_dir: Path) -> None:
    half = b'{"status": "succeeded", "objective": 0.9, "attem'
    (run_dir / "run.json").write_bytes(half)
    record = RunRecord(run_dir)
    assert record.unreadable and record.data == {"attempts": []}
    record.update(status="running")
    [aside] = run_dir.glob("run.json.unreadable-*")
    assert aside.read_bytes() == half
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"


def test_a_run_json_rewritten_since_it_was_found_unreadable_is_not_set_aside(run_dir: Path) -> None:
    (run_dir / "run.json").write_text("{")
    record = RunRecord(run_dir)
    (run_dir / "tmp.json").write_text('{"status": "running"}')
    os.replace(run_dir / "tmp.json", run_dir / "run.json")  # another process's atomic write
    assert record.set_aside() is None
    assert not list(run_dir.glob("run.json.unreadable-*"))


def test_a_record_is_rebuilt_from_hydra_and_the_metrics(run_dir: Path) -> None:
    hydra = run_dir / ".hydra"
    hydra.mkdir()
    (hydra / "config.yaml").write_text("seed: 7\nrun:\n  name: mine\n  objective: test/mean_iou\n")
    (hydra / "overrides.yaml").write_text("- seed=7\n- debug=fast\n")
    for name, overrides in (("resume-2026-12-01_10-00-00", "- resume=/x\n- processes.train.epochs=3\n"),
                            ("resume-2026-12-01_11-00-00", "- resume=/x\n")):
        (hydra / name).mkdir()
        (hydra / name / "overrides.yaml").write_text(overrides)
    rows = [{"step": 0, "time": 1764500000.0, "train/loss": 1.0}, {"step": 5, "time": 1764500100.0,
            "test/mean_iou": 0.5}, {"step": 9, "time": 1764500200.0, "test/mean_iou": 0.75}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 10, "te')
    (run_dir / "run.json").write_text('{"status": "succ')
    record = RunRecord(run_dir)
    line = rebuild(record, resuming=True)  # the newest resume-* is this process's own
    [aside] = run_dir.glob("run.json.unreadable-*")
    assert line.startswith(f"run.json was unreadable (16 bytes, not valid JSON from byte 11); kept as {aside.name}")
    assert "rebuilt from .hydra/ and metrics.jsonl: started 2025-11-30T10:53:20+00:00, 2 earlier attempt(s)" in line
    assert line.endswith("objective 0.75") and "\n" not in line
    data = record.data
    assert data["started"] == "2025-11-30T10:53:20+00:00" and data["seed"] == 7 and data["name"] == "mine"
    assert data["overrides"] == ["seed=7", "debug=fast"] and data["objective"] == 0.75
    assert data["metrics"] == {"train/loss": 1.0, "test/mean_iou": 0.75}
    assert [a["status"] for a in data["attempts"]] == ["lost", "lost"]
    assert data["attempts"][1]["overrides"] == ["processes.train.epochs=3"]
    assert data["rebuilt"]["unreadable"] == aside.name


# -- resume overrides ---------------------------------------------------------------


STORED = {"seed": 7, "processes": {"train": {"epochs": 2}, "test": {"_target_": "T"}},
          "data": {"limit_train": 128}, "optimizer": {"lr": 0.1}}
CHOICES = {"experiment": "seg", "model": "unet", "debug": "fast", "data": "shapes_large"}


def resume_with(*overrides: str, current: dict[str, Any] | None = None) -> tuple[list[str], dict[str, Any]]:
    stored = OmegaConf.create(STORED)
    applied = apply_resume_overrides(stored, OmegaConf.create(current or STORED), list(overrides), CHOICES)
    return applied, OmegaConf.to_container(stored)  # type: ignore[return-value]


def test_the_original_command_resumes_the_run_as_it_was() -> None:
    applied, stored = resume_with("experiment=seg", "debug=fast", "seed=7", "model=unet", "data=shapes_large",
                                  "data.limit_train=128", "~processes.result", "processes.train.epochs=2")
    assert applied == [] and stored == STORED


def test_an_allowed_change_is_applied_beside_the_unchanged_ones() -> None:
    current = {**STORED, "optimizer": {"lr": 0.01}}
    applied, stored = resume_with("seed=7", "optimizer.lr=0.01", current=current)
    assert applied == ["optimizer.lr=0.01"] and stored["optimizer"] == {"lr": 0.01}


def test_every_real_change_is_named_in_one_refusal_with_old_and_new_values() -> None:
    current = {**STORED, "seed": 3, "data": {"limit_train": 64}, "processes": {"train": {"epochs": 2}}}
    with pytest.raises(ConfigError) as info:
        resume_with("experiment=seg", "model=unet_small", "seed=3", "data.limit_train=64", "~processes.test",
                    "debug=null", current=current)
    assert info.value.key == "model, seed, data.limit_train, processes.test, debug"
    assert info.value.message == (
        "cannot be changed when resuming: the run was started with model=unet, seed=7, data.limit_train=128, "
        "processes.test=<T>, debug=fast; this command sets model=unet_small, seed=3, data.limit_train=64, "
        "~processes.test, debug=null")
