"""tipi's search for real: workers that pull trials, pruning, a killed worker, a search continued, detached.

Every trial is a tipi run on a tiny CPU config (a second or two); the study
is read back with Optuna and compared with each trial's run.json.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from tests.conftest import RunTipi, read_json, tipi_env
from tests.integration.slurm_helpers import slurm_cluster  # noqa: F401 - a fixture, used through usefixtures

TINY = ("debug=fast", "model=unet_small", "progress=none", "device=cpu", "data.limit_train=16", "data.limit_val=8",
        "data.limit_test=8", "data.image_size=16", "processes.result.num_samples=1",
        "processes.train.num_figure_samples=1", "processes.train.figures_every_n_epochs=0")
LR = "optimizer.lr=tag(log, interval(1e-4, 1e-1))"


def study_of(sweep: Path) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(sweep / "study.journal")))
    [name] = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def trial_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def env(tmp_path: Path) -> dict[str, str]:
    return tipi_env(TIPI_SLOTS_DIR=str(tmp_path / "slots"))


def test_an_asha_search_with_four_workers_prunes_and_its_records_agree_with_the_study(
    run_tipi: RunTipi, tmp_path: Path
) -> None:
    search = ("-m", *TINY, "processes.train.epochs=4", "search=asha", "search.seed=1", LR, "hydra.sweep.dir=s")
    proc = run_tipi(*search, "search.trials=16", "launcher=pool", "launcher.workers=4", env=env(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep = tmp_path / "s"
    study = study_of(sweep)
    assert len(study.trials) == 16 and len(trial_dirs(sweep)) == 16
    states = {t.number: t.state.name.lower() for t in study.trials}
    lrs = [t.params["optimizer.lr"] for t in study.trials]
    assert len(set(lrs)) == 16, "each worker samples on its own (seed + worker): no value proposed twice"
    assert set(states.values()) == {"complete", "pruned"}, states
    for run_dir in trial_dirs(sweep):
        record = read_json(run_dir / "run.json")
        number = record["trial"]["number"]
        assert run_dir.name == str(number) and record["trial"]["state"] == states[number]
        assert record["status"] == {"complete": "succeeded", "pruned": "pruned"}[states[number]]
        if record["status"] == "pruned":  # stopped at a rung epoch, with its checkpoint
            assert record["trial"]["last_step"] < 4 and (run_dir / "checkpoints" / "last.pt").exists()
    assert len({read_json(d / "run.json")["slot"]["slots"][0] for d in trial_dirs(sweep)}) == 4, "four workers"
    assert (sweep / "search.png").stat().st_size > 1000
    status = subprocess.run([sys.executable, "-m", "tipi.runs", "search", "status", str(sweep), "--json"],
                            capture_output=True, text=True, env=env(tmp_path), timeout=60)
    shown = json.loads(status.stdout)
    assert shown["best"]["trial"] == study.best_trial.number and sum(shown["counts"].values()) == 16
    assert "python -m tipi" in shown["command"] and "optimizer.lr=" in shown["command"]
    # the same command again, with a larger total: the study continues, no trial's directory is written twice
    started = {d.name: read_json(d / "run.json")["started"] for d in trial_dirs(sweep)}
    run_tipi(*search, "search.trials=18", "launcher=local", check=True)
    assert len(study_of(sweep).trials) == 18 and len(trial_dirs(sweep)) == 18
    assert {n: read_json(sweep / n / "run.json")["started"] for n in started} == started


def test_a_killed_worker_gives_its_trial_back_and_the_study_still_reaches_its_total(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tipi", "-m", *TINY, "data.limit_train=64", "processes.train.epochs=4",
         "search=tpe", "search.trials=4", LR, "launcher=pool", "launcher.workers=2", "hydra.sweep.dir=s"],
        cwd=tmp_path, env=env(tmp_path), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    sweep = tmp_path / "s"
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline:
        for run_dir in sweep.glob("[0-9]*"):
            record = read_json(run_dir / "run.json") if (run_dir / "checkpoints" / "last.pt").exists() else {}
            if record.get("status") == "running":
                victim = (run_dir, record["pid"])
                break
        time.sleep(0.1)
    assert victim is not None, "a trial should be training"
    os.kill(victim[1], signal.SIGKILL)  # the worker: its trial runs in the worker's own process
    out, _ = proc.communicate(timeout=240)
    study = study_of(sweep)
    given_back = [t for t in study.trials if t.user_attrs.get("gave_back")]
    counted = [t for t in study.trials if not t.user_attrs.get("gave_back")]
    assert len(given_back) == 1 and given_back[0].user_attrs["run_dir"] == str(victim[0]), out[-3000:]
    assert len(counted) == 4 and all(t.state.name in ("COMPLETE", "PRUNED") for t in counted), out[-3000:]
    [retry] = [t for t in counted if t.user_attrs.get("retry_of") == given_back[0].number]
    assert retry.params == given_back[0].params
    record = read_json(victim[0] / "run.json")  # the retry continued the killed trial in its own directory
    assert record["trial"]["number"] == retry.number and len(record["attempts"]) >= 2
    assert len(trial_dirs(sweep)) == 4, "nothing counted twice: four trial directories"


def test_a_detached_search_is_followed_to_its_end(run_tipi: RunTipi, tmp_path: Path) -> None:
    proc = run_tipi("-m", *TINY, "processes.train.epochs=2", "search=asha", "search.trials=4", LR, "launcher=pool",
                    "launcher.workers=2", "launcher.wait=false", "hydra.sweep.dir=s", env=env(tmp_path))
    assert proc.returncode == 0 and "not waiting for them" in proc.stdout, proc.stderr[-2000:]
    deadline = time.monotonic() + 120
    shown: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = subprocess.run([sys.executable, "-m", "tipi.runs", "search", "status", "s", "--json"],
                                cwd=tmp_path, capture_output=True, text=True, env=env(tmp_path), timeout=60)
        if status.returncode == 0:
            shown = json.loads(status.stdout)
            if shown["counts"].get("complete", 0) + shown["counts"].get("pruned", 0) == 4:
                break
        time.sleep(2)
    assert sum(shown["counts"].values()) == 4 and shown["best"] is not None, shown


MNIST_OPTUNA = """\
# @package _global_
# lightning-hydra-template's configs/hparams_search/mnist_optuna.yaml, its keys adapted to tipi's config
defaults:
  - override /hydra/sweeper: optuna

optimized_metric: "val/mean_iou"

hydra:
  mode: "MULTIRUN"
  sweeper:
    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper
    storage: null
    study_name: null
    n_jobs: 1
    direction: maximize
    n_trials: 2
    sampler:
      _target_: optuna.samplers.TPESampler
      seed: 1234
      n_startup_trials: 10
    params:
      optimizer.lr: interval(0.0001, 0.1)
      data.batch_size: choice(4, 8, 16)
      model.base_channels: choice(4, 8)
"""


def test_lightning_hydra_templates_optuna_file_runs_as_it_is(run_tipi: RunTipi, tmp_path: Path) -> None:
    conf = tmp_path / "conf" / "hparams_search"
    conf.mkdir(parents=True)
    (conf / "mnist_optuna.yaml").write_text(MNIST_OPTUNA)
    proc = run_tipi("--config-dir", str(tmp_path / "conf"), *TINY, "processes.train.epochs=1",
                    "+hparams_search=mnist_optuna", "hydra.sweep.dir=s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    study = study_of(tmp_path / "s")
    assert len(study.trials) == 2 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert {"optimizer.lr", "data.batch_size", "model.base_channels"} == set(study.trials[0].params)
    assert (tmp_path / "s" / "optimization_results.yaml").exists()


@pytest.mark.parametrize(("override", "message"), [
    ("search.sampler=bayes", "Error search.sampler: 'bayes' is not a sampler"),
    ("search.trials=0", "Error search.trials"),
])
def test_bad_search_input_is_one_message_before_any_worker_starts(run_tipi: RunTipi, tmp_path: Path, override: str,
                                                                  message: str) -> None:
    proc = run_tipi("-m", *TINY, "search=asha", LR, override, "hydra.sweep.dir=s")
    assert proc.returncode != 0 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not list(tmp_path.rglob("run.json")) and not (tmp_path / "s" / "study.journal").exists()


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_the_same_search_as_a_three_worker_array_on_slurm(run_tipi: RunTipi, tmp_path: Path) -> None:
    proc = run_tipi("-m", *TINY, "processes.train.epochs=2", "search=asha", "search.trials=6", LR, "launcher=slurm",
                    "launcher.workers=3", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10",
                    "hydra.sweep.dir=s", timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    study = study_of(tmp_path / "s")
    assert len(study.trials) == 6 and all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    slurm = [read_json(d / "run.json")["attempts"][0]["slurm"] for d in trial_dirs(tmp_path / "s")]
    assert len({s["slurm_array_job_id"] for s in slurm}) == 1, "the workers are one job array"
    assert {s["slurm_array_task_id"] for s in slurm} <= {"0", "1", "2"}
