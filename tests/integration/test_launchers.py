"""Launchers and sweepers without a cluster: the same summary from every launcher, lost jobs, Optuna.

Every test runs the real CLI in a subprocess; submitit-local jobs run in
processes of their own, like SLURM jobs.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import RunTipi, read_json, tipi_env
from tests.integration.slurm_helpers import misbehave_config_dir, read_record, train_steps_logged, wait_for

# The default pipeline on very little data: seconds per job.
TINY = ("debug=fast", "model=unet_small", "progress=none", "data.limit_train=16", "data.limit_val=8",
        "data.limit_test=8",
        "data.image_size=16", "processes.result.num_samples=1", "processes.train.num_figure_samples=1")


def summary(root: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of the one ``summary.csv`` under ``root``."""
    [path] = list(root.rglob("summary.csv"))
    reader = csv.DictReader(path.read_text().splitlines())
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def test_local_and_submitit_local_give_the_same_summary(run_tipi: RunTipi, tmp_path: Path) -> None:
    shapes = {}
    for launcher in ("local", "submitit_local"):
        cwd = tmp_path / launcher
        cwd.mkdir()
        run_tipi("-m", *TINY, f"launcher={launcher}", "seed=1,2", cwd=cwd, check=True)
        header, rows = summary(cwd / "multirun")
        for row in rows:
            assert isinstance(float(row["objective"]), float)
            assert read_json(Path(row["run_dir"]) / "run.json")["status"] == "succeeded"
        shapes[launcher] = (header, [(r["job"], r["status"], r["attempts"], r["error"],
                                      r["overrides"].replace(f"launcher={launcher}", "")) for r in rows])
    assert shapes["local"] == shapes["submitit_local"]
    header, rows = shapes["local"]
    assert header == ["job", "overrides", "status", "objective", "duration_s", "attempts", "error", "note", "run_dir"]
    assert [r[:2] for r in rows] == [("0", "succeeded"), ("1", "succeeded")]


def test_submitit_local_reports_a_raising_and_a_killed_job_and_runs_the_others(run_tipi: RunTipi,
                                                                                tmp_path: Path) -> None:
    conf = misbehave_config_dir(tmp_path)
    proc = run_tipi("-m", "--config-dir", str(conf), "+experiment=misbehave", "launcher=submitit_local", "seed=1,2,3")
    assert proc.returncode != 0, "a multirun with failed jobs exits non-zero"
    _, rows = summary(tmp_path / "multirun")
    assert [(r["overrides"].split()[-1], r["status"]) for r in rows] == [
        ("seed=1", "succeeded"), ("seed=2", "failed"), ("seed=3", "failed")]
    assert rows[1]["error"] == "RuntimeError: job with seed 2 broke on purpose"
    assert rows[2]["error"].startswith("JobLost: job ") and "ended without a result" in rows[2]["error"]
    assert read_json(Path(rows[2]["run_dir"]) / "run.json")["status"] == "failed", "the killed job's record is closed"
    assert "multirun summary" in proc.stderr


def test_the_basic_launcher_runs_on_after_a_failed_job_and_exits_non_zero(run_tipi: RunTipi,
                                                                         tmp_path: Path) -> None:
    conf = misbehave_config_dir(tmp_path)
    proc = run_tipi("-m", "--config-dir", str(conf), "+experiment=misbehave", "seed=2,1")
    assert proc.returncode != 0
    _, rows = summary(tmp_path / "multirun")
    assert [(r["job"], r["status"], r["error"]) for r in rows] == [
        ("0", "failed", "RuntimeError: job with seed 2 broke on purpose"), ("1", "succeeded", "")]
    assert "multirun summary" in proc.stderr


def test_jobs_that_fail_the_config_check_stop_the_multirun_before_any_job(run_tipi: RunTipi,
                                                                          tmp_path: Path) -> None:
    proc = run_tipi("-m", *TINY, "+processes.train.epocs=1,2")
    assert proc.returncode != 0
    assert "2 of 2 jobs would be refused; no job was started" in proc.stderr
    assert "processes.train.epocs" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("run.json")) and not list(tmp_path.rglob("summary.csv")), "nothing ran"


def test_launcher_configs_compose_with_their_own_and_hydras_keys(run_tipi: RunTipi) -> None:
    def launcher_cfg(*overrides: str) -> dict:
        return yaml.safe_load(run_tipi(*overrides, "--cfg", "hydra", check=True).stdout)["hydra"]["launcher"]

    slurm = launcher_cfg("launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=240")
    assert slurm["_target_"] == "hydra_plugins.tipi_launcher.launchers.SlurmLauncher"
    assert (slurm["partition"], slurm["timeout_min"], slurm["cpus_per_task"]) == ("gpu", 240, 1)
    assert slurm["max_num_timeout"] > 0, "timeouts requeue"
    local = launcher_cfg("launcher=submitit_local")
    assert local["_target_"] == "hydra_plugins.tipi_launcher.launchers.SubmititLocalLauncher"
    stock = launcher_cfg("hydra/launcher=submitit_slurm", "hydra.launcher.account=lab")
    assert stock["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert stock["account"] == "lab"
    assert launcher_cfg()["_target_"] == "hydra_plugins.tipi_launcher.launchers.AutoLauncher"
    assert launcher_cfg("launcher=local")["_target_"] == "hydra_plugins.tipi_launcher.launchers.InProcessLauncher"
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    assert launcher_cfg("hydra/launcher=basic")["_target_"] == basic


def test_optuna_searches_the_learning_rate_and_reports_the_best_value(run_tipi: RunTipi, tmp_path: Path) -> None:
    proc = run_tipi("-m", "+experiment=seg", *TINY, "model=unet_small", "+hparams_search=seg_optuna",
                    "hydra.sweeper.n_trials=4", check=True)
    _, rows = summary(tmp_path / "multirun")
    assert [r["status"] for r in rows] == ["succeeded"] * 4
    lrs = [float(r["overrides"].split("optimizer.lr=")[1].split()[0]) for r in rows]
    assert len(set(lrs)) == 4 and all(1e-4 <= lr <= 3e-2 for lr in lrs)
    [results] = list((tmp_path / "multirun").rglob("optimization_results.yaml"))
    best = yaml.safe_load(results.read_text())
    assert best["best_value"] == max(float(r["objective"]) for r in rows), "Optuna maximised the returned objective"
    assert f"value {best['best_value']:.6g}" in proc.stdout + proc.stderr
    assert "best (max): job" in proc.stderr


def test_a_job_out_of_requeues_is_recorded_failed_not_requeued(tmp_path: Path) -> None:
    # SIGUSR2 is what SLURM sends signal_delay_s before the time limit; submitit's
    # local executor handles it the same way. A 10-minute limit counts as
    # timed out from the start (submitit: less than 10 minutes left), and
    # max_num_timeout=0 allows no requeue: the job must end failed, saying why.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tipi", "-m", *TINY, "data.limit_train=128", "processes.train.epochs=2",
         "processes.train.log_every_n_steps=1", "launcher=submitit_local", "hydra.launcher.timeout_min=10",
         "+hydra.launcher.max_num_timeout=0"],
        cwd=tmp_path, env=tipi_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        run_dir = wait_for(lambda: next((tmp_path / "multirun").glob("*/*/0"), None), 60, "the job directory")
        wait_for(lambda: train_steps_logged(run_dir) >= 2, 120, "two training steps")
        os.kill(read_record(run_dir)["pid"], signal.SIGUSR2)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, output
    record = read_record(run_dir)
    assert record["status"] == "failed" and len(record["attempts"]) == 1, record
    assert "not requeued" in record["error"] and "timed-out too many times" in record["error"]
    _, rows = summary(tmp_path / "multirun")
    assert rows[0]["status"] == "failed" and "not requeued" in rows[0]["error"]
