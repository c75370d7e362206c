"""Faults lose nothing: what is on disk afterwards is consistent, and the run continues.

Runs are real ``python -m tipi`` processes; signals go to their own pid once
the run directory shows they are mid-epoch; faults at the OS boundary (a
write that hangs half-way, a file that fills up) come from
``tests.reliability.faults`` or a real, small tmpfs.
"""

from __future__ import annotations

import csv
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RunTipi, read_json, run_dirs
from tests.reliability.conftest import (
    INTERRUPTIBLE,
    STEPS_PER_EPOCH,
    load_checkpoint,
    records,
    reliability_env,
    same_weights,
    start_tipi,
    tipi_command,
    train_lines,
    wait_until,
)

QUICK = ("debug=fast", "model=unet_small", "progress=none", "~processes.result")


def recording(log: Path, *names: str, failing: str | None = None) -> list[str]:
    """Overrides adding ``RecordingPermanence`` s (in this order) that log their hooks to ``log``."""
    args = []
    for name in names:
        node = f"+permanences.{name}"
        args += [f"{node}._target_=tests.doubles.RecordingPermanence", f"{node}.name={name}", f"{node}.log_file={log}"]
        if name == failing:
            args.append(f"{node}.fail_in=cleanup")
    return args


def boom(action: str = "raise") -> list[str]:
    """Overrides adding a last process, ``boom``, that raises ``ValueError('boom broke')`` (or not)."""
    return ["+processes.boom._target_=tests.doubles.RecordingProcess", "+processes.boom.label=boom",
            f"+processes.boom.action={action}"]


def events(log: Path) -> list[str]:
    """The lifecycle events ``RecordingPermanence`` logged, in order."""
    return log.read_text().split()


def assert_finite(weights: dict[str, object]) -> None:
    """Every tensor of a state dict is finite."""
    import torch

    assert all(bool(torch.isfinite(t).all()) for t in weights.values() if isinstance(t, torch.Tensor))


def test_exception_inside_a_process(run_tipi: RunTipi, tmp_path: Path) -> None:
    """an exception inside a process: every permanence cleaned up, ``run.json`` failed with the
    error, checkpoints intact; the run continues once the process is fixed."""
    log, run = tmp_path / "lifecycle.log", tmp_path / "run"
    proc = run_tipi(*QUICK, "hydra.run.dir=run", *recording(log, "a", "b"), *boom("raise"))
    assert proc.returncode == 1
    assert "ValueError: boom broke" in proc.stderr and "Traceback" not in proc.stderr
    assert events(log)[-3:] == ["boom.execute", "b.cleanup", "a.cleanup"]
    record = read_json(run / "run.json")
    assert record["status"] == "failed" and record["error"] == "ValueError: boom broke"
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["state"]["finished"] is True
    assert same_weights(load_checkpoint(run / "checkpoints" / "best.pt")["model"], last["model"])
    assert records(run)  # every line of metrics.jsonl parses
    # Fixed (the override applied to the resumed run), it picks up where it stopped: training is not repeated.
    run_tipi(f"resume={run}", "processes.boom.action=ok", check=True)
    record = read_json(run / "run.json")
    assert record["status"] == "succeeded" and [a["status"] for a in record["attempts"]] == ["failed", "succeeded"]
    assert same_weights(load_checkpoint(run / "checkpoints" / "last.pt")["model"], last["model"])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_and_sigterm_mid_epoch(run_tipi: RunTipi, tmp_path: Path, uninterrupted: Path,
                                         signum: signal.Signals) -> None:
    """Ctrl-C and SIGTERM mid-epoch: cleanup, a checkpoint, status interrupted, exit 130 / 143;
    resumed (``resume=``), the run ends with the weights of a run never interrupted."""
    log, run = tmp_path / "lifecycle.log", tmp_path / "run"
    proc = start_tipi(*INTERRUPTIBLE, "hydra.run.dir=run", *recording(log, "rec"), cwd=tmp_path)
    wait_until(proc, lambda: train_lines(run) >= 3)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr
    assert f"interrupted by {signum.name}; state checkpointed, cleanup done" in stderr
    assert events(log)[-2:] == ["rec.checkpoint", "rec.cleanup"]
    record = read_json(run / "run.json")
    assert record["status"] == "interrupted" and record["attempts"][-1]["reason"] == f"interrupted by {signum.name}"
    state = load_checkpoint(run / "checkpoints" / "last.pt")["state"]
    assert state["epoch"] == 0 and 0 < state["epoch_step"] < STEPS_PER_EPOCH, state  # mid-epoch, exactly saved
    if signum == signal.SIGINT:
        return  # the two differ only in the signal: one resume (SIGTERM's, a SLURM preemption's) is enough
    run_tipi(f"resume={run}", check=True)
    assert read_json(run / "run.json")["status"] == "succeeded"
    assert same_weights(load_checkpoint(run / "checkpoints" / "last.pt")["model"],
                        load_checkpoint(uninterrupted / "checkpoints" / "last.pt")["model"])


def test_sigkill_mid_checkpoint_write(run_tipi: RunTipi, tmp_path: Path, uninterrupted: Path) -> None:
    """SIGKILL mid-checkpoint-write: the previous ``last.pt`` still loads, and ``resume=`` continues
    from it to the weights of a run never interrupted (issue #3)."""
    run = tmp_path / "run"
    # last.pt is written after the load step, then after steps 1, 2, 3: the 5th write is step 4's.
    proc = start_tipi(*INTERRUPTIBLE, "hydra.run.dir=run", cwd=tmp_path, fault=("hang-in-save", 5))
    wait_until(proc, lambda: (run / "HUNG").exists())
    half_written = Path((run / "HUNG").read_text())
    proc.kill()  # SIGKILL, while half of step 4's last.pt is in its temp file
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert half_written.stat().st_size > 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["state"]["step"] == 3  # the 3rd, whole
    run_tipi(f"resume={run}", check=True)
    record = read_json(run / "run.json")
    assert record["status"] == "succeeded" and len(record["attempts"]) == 2
    assert not half_written.exists(), "the killed run's temp file is cleared on resume"
    assert same_weights(load_checkpoint(run / "checkpoints" / "last.pt")["model"],
                        load_checkpoint(uninterrupted / "checkpoints" / "last.pt")["model"])


def test_sigkill_mid_epoch_then_run_again_in_the_same_dir(run_tipi: RunTipi, tmp_path: Path,
                                                             uninterrupted: Path) -> None:
    """SIGKILL mid-epoch, then the same command in the same directory (a SLURM requeue)
    resumes it; the final weights equal those of a run never interrupted."""
    run = tmp_path / "run"
    proc = start_tipi(*INTERRUPTIBLE, "hydra.run.dir=run", cwd=tmp_path)
    wait_until(proc, lambda: train_lines(run) >= 3)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(run / "checkpoints" / "last.pt")["state"]["epoch_step"] > 0  # killed mid-epoch
    run_tipi(*INTERRUPTIBLE, "hydra.run.dir=run", check=True)
    assert read_json(run / "run.json")["status"] == "succeeded"
    assert same_weights(load_checkpoint(run / "checkpoints" / "last.pt")["model"],
                        load_checkpoint(uninterrupted / "checkpoints" / "last.pt")["model"])


@pytest.mark.parametrize("on_nan", ["raise", "skip"])
def test_nan_loss(run_tipi: RunTipi, tmp_path: Path, on_nan: str) -> None:
    """a NaN loss stops training with an error naming the step, the last good checkpoint kept;
    with ``processes.train.on_nan=skip`` that step's update is skipped and training goes on."""
    run = tmp_path / "run"
    proc = run_tipi(*INTERRUPTIBLE, "hydra.run.dir=run", "model._target_=tests.reliability.doubles.NaNAtStep",
                    "+model.nan_at_step=4", f"processes.train.on_nan={on_nan}")
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert_finite(last["model"])
    if on_nan == "raise":
        assert proc.returncode == 1
        assert "Error processes.train: the training loss is nan at step 4 (epoch 0)" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert read_json(run / "run.json")["error"].startswith("TrainingDiverged: processes.train: the training loss")
        assert last["state"]["step"] == 3  # the step before the NaN
    else:
        assert proc.returncode == 0, proc.stderr
        assert "training loss is nan at step 4; the step is skipped" in proc.stdout  # Hydra's log
        assert read_json(run / "run.json")["status"] == "succeeded"
        assert last["state"]["step"] == 2 * STEPS_PER_EPOCH


def _mount_tmpfs(path: Path, size: int) -> None:
    """Mount a tmpfs of ``size`` bytes at ``path``, or skip: mounting needs root (CI runs as root)."""
    path.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")


@pytest.mark.parametrize("what", ["checkpoint", "metrics"])
def test_disk_fills_while_writing(run_tipi: RunTipi, tmp_path: Path, uninterrupted: Path, what: str) -> None:
    """a disk that fills while writing a checkpoint (a real tmpfs, too small for the 2nd one) or
    metrics (a file object that fails after 3 lines): a clear error, the previous checkpoint kept."""
    if what == "checkpoint":
        disk = tmp_path / "disk"
        # Room for one last.pt and the run's small files, not for the temp file of the next one.
        _mount_tmpfs(disk, (uninterrupted / "checkpoints" / "last.pt").stat().st_size * 3 // 2)
        try:
            run = disk / "run"
            proc = run_tipi(*INTERRUPTIBLE, f"hydra.run.dir={run}")
            assert proc.returncode == 1
            assert f"Error permanences.network: cannot write {run}/checkpoints/last.pt: No space left on device (" \
                in proc.stderr and " free on its file system); the previous checkpoint is kept" in proc.stderr
            assert load_checkpoint(run / "checkpoints" / "last.pt")["state"]["step"] == 1
            assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.pt"]  # no temp file left
            assert read_json(run / "run.json")["error"].startswith("CheckpointError: permanences.network: cannot")
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)
    else:
        run = tmp_path / "run"
        proc = subprocess.run(tipi_command(*INTERRUPTIBLE, "hydra.run.dir=run", fault=("metrics-disk-full", 3)),
                              cwd=tmp_path, env=reliability_env(), capture_output=True, text=True, timeout=240,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == 1
        assert f"Error permanences.logger: cannot write {run}/metrics.jsonl: No space left on device" in proc.stderr
        assert len(records(run)) == 3  # the lines that fitted are whole
        assert load_checkpoint(run / "checkpoints" / "last.pt")["state"]["step"] == 3
        assert read_json(run / "run.json")["status"] == "failed"
    assert "Traceback" not in proc.stderr


def test_one_failing_job_in_a_multirun(run_tipi: RunTipi, tmp_path: Path) -> None:
    """one failing job in a multirun: the others complete and the summary marks it."""
    proc = run_tipi("-m", *QUICK, "~processes.train", *boom("raise,ok,ok"))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    jobs = run_dirs(tmp_path / "multirun")
    assert [read_json(j / "run.json")["status"] for j in jobs] == ["failed", "succeeded", "succeeded"]
    [summary] = (tmp_path / "multirun").rglob("summary.csv")
    rows = list(csv.DictReader(summary.read_text().splitlines()))
    assert [(r["status"], r["error"]) for r in rows] == [
        ("failed", "ValueError: boom broke"), ("succeeded", ""), ("succeeded", "")]


@pytest.mark.parametrize("process", ["raises", "succeeds"])
def test_permanence_whose_cleanup_raises(run_tipi: RunTipi, tmp_path: Path, process: str) -> None:
    """a permanence whose ``cleanup()`` raises: the others still clean up, and the original error
    is the one reported (with the cleanup error attached); after a clean run, the cleanup error is."""
    log, run = tmp_path / "lifecycle.log", tmp_path / "run"
    only_boom = ["~processes.load", "~processes.train", "~processes.validate", "~processes.test",
                 "~processes.result", "permanences.network=null", "permanences.data=null"]
    proc = run_tipi("progress=none", "hydra.run.dir=run", *only_boom, *recording(log, "a", "b", failing="b"),
                    *boom("raise" if process == "raises" else "ok"))
    assert proc.returncode == 1
    assert "boom.execute" in events(log)
    assert events(log)[-2:] == ["b.cleanup", "a.cleanup"]  # b failed, a was cleaned up all the same
    cleanup_error = "permanences.b: cleanup() failed: RuntimeError('b.cleanup failed')"
    error = read_json(run / "run.json")["error"]
    if process == "raises":
        assert "ValueError: boom broke" in proc.stderr and f"also: {cleanup_error}" in proc.stderr
        assert error == "ValueError: boom broke"
    else:
        assert f"Error {cleanup_error}" in proc.stderr
        assert error == f"PermanenceError: {cleanup_error}"
    assert "Traceback" not in proc.stderr
