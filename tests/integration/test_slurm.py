"""Sweeps on a real SLURM cluster: ``launcher=slurm`` end to end, lost jobs, requeue and resume.

Needs the local single-node cluster (``scripts/local-slurm start``; ``.ci/run``
starts it). Without one these tests skip, saying why; with
``TIPI_REQUIRE_SLURM=1`` (CI) they fail instead. Jobs run the real CLI through
submitit and sbatch, which pass on the test's environment (offline WandB, the
repository on ``PYTHONPATH``).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import RunTipi, read_json, read_jsonl, tipi_env
from tests.integration.slurm_helpers import (
    misbehave_config_dir,
    slurm_cluster,  # noqa: F401 - a fixture, used through usefixtures
    slurm_job_id,
    train_steps_logged,
    wait_for,
)

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


def summary_rows(root: Path) -> list[dict[str, str]]:
    """The rows of the one ``summary.csv`` under ``root``."""
    [summary] = list(root.rglob("summary.csv"))
    return list(csv.DictReader(summary.read_text().splitlines()))


def test_seg_sweep_runs_as_a_slurm_job_array(run_tipi: RunTipi, tmp_path: Path) -> None:
    run_tipi("-m", "+experiment=seg", "debug=fast", "launcher=slurm", "seed=1,2,3", check=True)
    rows = summary_rows(tmp_path / "multirun")
    assert [r["status"] for r in rows] == ["succeeded"] * 3
    assert [r["overrides"].split()[-1] for r in rows] == ["seed=1", "seed=2", "seed=3"]
    assert all(float(r["objective"]) >= 0 for r in rows)
    slurm = [read_json(Path(r["run_dir"]) / "run.json")["attempts"][0]["slurm"] for r in rows]
    assert len({s["slurm_job_id"] for s in slurm}) == 3, slurm
    assert len({s["slurm_array_job_id"] for s in slurm}) == 1, "one sweep is one job array"
    assert sorted(s["slurm_array_task_id"] for s in slurm) == ["0", "1", "2"]


def test_a_raising_and_a_killed_job_are_failed_rows_and_the_others_succeed(run_tipi: RunTipi,
                                                                           tmp_path: Path) -> None:
    conf = misbehave_config_dir(tmp_path)
    start = time.monotonic()
    proc = run_tipi("-m", "--config-dir", str(conf), "+experiment=misbehave", "launcher=slurm", "seed=1,2,3")
    elapsed = time.monotonic() - start
    assert proc.returncode != 0, "a multirun with failed jobs exits non-zero"
    rows = summary_rows(tmp_path / "multirun")
    assert [(r["overrides"].split()[-1], r["status"]) for r in rows] == [
        ("seed=1", "succeeded"), ("seed=2", "failed"), ("seed=3", "failed")]
    assert rows[0]["objective"] == "1.0"
    assert rows[1]["error"] == "RuntimeError: job with seed 2 broke on purpose", "the error's first line"
    assert rows[2]["error"].startswith("JobLost: job ") and "(state FAILED)" in rows[2]["error"]
    killed = read_json(Path(rows[2]["run_dir"]) / "run.json")
    assert killed["status"] == "failed" and killed["attempts"][-1]["status"] == "failed", "the record is closed"
    assert "multirun summary" in proc.stderr
    assert elapsed < 60, f"the sweep took {elapsed:.0f}s to report its lost job"


# Long enough (2 epochs of 6 steps) to interrupt mid-training; a checkpoint every step;
# WandB (offline) to see that a requeued run continues its WandB run.
TRAIN = ("debug=fast", "model=unet_small", "progress=none", "seed=5", "data.limit_train=96", "processes.train.epochs=2",
         "processes.train.checkpoint_every_n_steps=1", "processes.train.log_every_n_steps=1", "logger=wandb")


def test_requeued_and_preempted_jobs_resume_in_their_directory_to_the_same_weights(tmp_path: Path) -> None:
    # Three identical trainings: job 0 runs through; job 1 is requeued by SLURM
    # (scontrol requeue: SIGTERM, then SLURM runs it again); job 2 gets SIGUSR2,
    # what SLURM sends signal_delay_s before a timeout or on preemption, and
    # submitit requeues it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tipi", "-m", *TRAIN, "launcher=slurm", "run.name=straight,requeue,usr2"],
        cwd=tmp_path, env=tipi_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        sweep = wait_for(lambda: next((tmp_path / "multirun").glob("*/*"), None), 60, "the sweep directory")
        for job, command in ((1, ["scontrol", "requeue"]), (2, ["scancel", "--signal=USR2"])):
            run_dir = sweep / str(job)
            wait_for(lambda: train_steps_logged(run_dir) >= 2, 150, f"job {job} to train two steps")  # noqa: B023
            job_id = slurm_job_id(run_dir)
            assert job_id, f"job {job}'s run.json has no SLURM job id"
            subprocess.run([*command, job_id], check=True, timeout=30)
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    rows = summary_rows(tmp_path / "multirun")
    assert [(r["status"], r["attempts"]) for r in rows] == [("succeeded", "1"), ("succeeded", "2"),
                                                           ("succeeded", "2")], rows

    straight, requeued, preempted = (read_json(sweep / str(job) / "run.json") for job in range(3))
    for record, first_status, signame in ((requeued, "interrupted", "SIGTERM"), (preempted, "requeued", "SIGUSR2")):
        first, second = record["attempts"]
        assert (first["status"], first["reason"]) == (first_status, f"interrupted by {signame}")
        assert second["status"] == "succeeded"
        assert first["slurm"]["slurm_job_id"] == second["slurm"]["slurm_job_id"], "the same job, requeued"
        assert second["slurm"]["slurm_restart_count"] == "1"
        assert first["start"] <= first["end"] <= second["start"]
    for job, record in enumerate((straight, requeued, preempted)):
        wandb_runs = sorted((sweep / str(job) / "wandb").glob("offline-run-*"))
        assert len(wandb_runs) == len(record["attempts"]), wandb_runs
        assert {run.name.rsplit("-", 1)[1] for run in wandb_runs} == {record["wandb_run_id"]}, "one WandB run"

    import torch

    def trained(job: int) -> tuple[dict[str, torch.Tensor], list[tuple[int, float]]]:
        run_dir = sweep / str(job)
        weights = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"]
        losses = [(m["step"], m["train/loss"]) for m in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in m]
        return weights, losses

    reference, reference_losses = trained(0)
    assert [step for step, _ in reference_losses] == list(range(1, 13))
    for job in (1, 2):
        weights, losses = trained(job)
        # every step trained exactly once, on the same batches: it continued where it stopped
        assert losses == reference_losses, f"job {job}"
        assert weights.keys() == reference.keys()
        assert all(torch.equal(weights[k], reference[k]) for k in reference), f"job {job}'s final weights differ"


def runs_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m tipi.runs ARGS`` (the ``tipi-runs`` console script) in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "tipi.runs", *args], cwd=cwd, env=tipi_env(), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def sweep_statuses(sweep: Path) -> list[tuple[int, str]]:
    """``(job, status)`` per job, as ``tipi-runs multirun status --json`` tells them."""
    proc = runs_cli("multirun", "status", str(sweep), "--json", cwd=sweep)
    assert proc.returncode == 0, proc.stderr
    return [(row["job"], row["status"]) for row in json.loads(proc.stdout)]


def test_a_detached_sweep_finishes_after_its_terminal_is_gone(run_tipi: RunTipi, tmp_path: Path) -> None:
    conf = misbehave_config_dir(tmp_path)
    start = time.monotonic()
    proc = run_tipi("-m", "--config-dir", str(conf), "+experiment=misbehave", "launcher=slurm", "launcher.wait=false",
                    "seed=4,5,6", "hydra.sweep.dir=multirun/detached", check=True)
    returned_after = time.monotonic() - start
    sweep = tmp_path / "multirun" / "detached"
    manifest = read_json(sweep / "manifest.json")
    job_ids = [job["job_ids"][-1] for job in manifest["jobs"]]
    assert [job["run_dir"] for job in manifest["jobs"]] == [str(sweep / str(n)) for n in range(3)]
    assert all(job_id in proc.stdout for job_id in job_ids) and str(sweep) in proc.stdout
    assert returned_after < 60, "the launching process returned without waiting for the jobs"
    # the launching process has exited; the jobs finish on their own and status reads them back
    wait_for(lambda: sweep_statuses(sweep) == [(0, "succeeded"), (1, "succeeded"), (2, "succeeded")], 240,
             "the detached jobs to succeed", interval=3)
    rows = summary_rows(sweep)
    assert [(r["overrides"].split()[-1], r["status"], r["objective"]) for r in rows] == [
        ("seed=4", "succeeded", "4.0"), ("seed=5", "succeeded", "5.0"), ("seed=6", "succeeded", "6.0")]
    nothing = runs_cli("multirun", "resubmit", str(sweep), cwd=tmp_path)
    assert nothing.returncode == 1 and "nothing to resubmit" in nothing.stderr, nothing.stderr
    assert "Traceback" not in nothing.stderr


def test_status_of_a_waited_for_sweep_matches_its_summary(run_tipi: RunTipi, tmp_path: Path) -> None:
    conf = misbehave_config_dir(tmp_path)
    run_tipi("-m", "--config-dir", str(conf), "+experiment=misbehave", "launcher=slurm", "seed=1,2,3")
    [sweep] = (tmp_path / "multirun").glob("*/*")
    written = [(r["job"], r["status"], r["error"]) for r in summary_rows(sweep)]
    (sweep / "summary.csv").unlink()
    assert sweep_statuses(sweep) == [(0, "succeeded"), (1, "failed"), (2, "failed")]
    assert [(r["job"], r["status"], r["error"]) for r in summary_rows(sweep)] == written, "the same summary"


def test_a_cancelled_job_is_resubmitted_and_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tipi", "-m", *TRAIN, "launcher=slurm", "launcher.wait=false",
         "run.name=straight,cancelled", "hydra.sweep.dir=multirun/s"],
        cwd=tmp_path, env=tipi_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    sweep = tmp_path / "multirun" / "s"
    wait_for(lambda: train_steps_logged(sweep / "1") >= 2, 150, "job 1 to train two steps")
    cancelled_id = read_json(sweep / "manifest.json")["jobs"][1]["job_ids"][-1]
    subprocess.run(["scancel", cancelled_id], check=True, timeout=30)
    wait_for(lambda: sweep_statuses(sweep) == [(0, "succeeded"), (1, "cancelled")], 240,
             "job 0 to succeed and job 1 to show cancelled", interval=3)
    again = runs_cli("multirun", "resubmit", str(sweep), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "resubmitted 1 job(s): 1" in again.stdout
    wait_for(lambda: sweep_statuses(sweep) == [(0, "succeeded"), (1, "succeeded")], 240,
             "the resubmitted job to succeed", interval=3)
    record = read_json(sweep / "1" / "run.json")
    assert [a["status"] for a in record["attempts"]] == ["interrupted", "succeeded"]
    first_job, second_job = (a["slurm"]["slurm_job_id"] for a in record["attempts"])
    assert first_job != second_job, "a new SLURM job, in the same run directory"
    assert read_json(sweep / "manifest.json")["jobs"][1]["job_ids"][0] == cancelled_id
    wandb_runs = sorted((sweep / "1" / "wandb").glob("offline-run-*"))
    assert {run.name.rsplit("-", 1)[1] for run in wandb_runs} == {record["wandb_run_id"]}, "one WandB run"

    import torch

    def weights(job: int) -> dict[str, torch.Tensor]:
        checkpoint = sweep / str(job) / "checkpoints" / "last.pt"
        return torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]

    reference, resumed = weights(0), weights(1)
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference), "the resumed job's final weights differ"
