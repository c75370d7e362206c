"""Every parameter of a process or permanence is a config key (tipi.params), through the real CLI.

A user project in a temp dir: a ``@pipeline_process`` function and a
``Permanence`` class whose YAML names only their ``_target_``. Their
parameters are overridden without ``+`` in a single run, a multirun, a WandB
sweep (offline, WandB's own engine) and an Optuna search space; ``--cfg job``
and ``--help`` show them; a misspelt one is refused before anything runs.
Each run is a few seconds (the function trains nothing).
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from tests.conftest import RunTipi, read_json, run_dirs, tipi_env

STEPS = '''\
"""A user's classification project, as the journey's level 4 teaches it."""

from tipi import Permanence, pipeline_process
from tipi.helpers import logger


class Scale(Permanence):
    """Scales the score: a resource the step shares."""

    def __init__(self, factor: float = 2.0, label: str = "scale") -> None:
        self.factor = factor
        self.label = label

    def cleanup(self) -> None:
        pass


@pipeline_process
def classify(scale: Scale, epochs: int = 3, lr: float = 1e-2, hidden: int = 32) -> float:
    """Pretend to train a classifier; the score depends on every option."""
    score = scale.factor * (epochs + hidden) * lr
    logger.log({"score": score}, step=0)
    return score
'''

EXPERIMENT = '''\
# @package _global_
defaults:
  - override /pipeline: null
  - override /scheduler: none
processes:
  train:
    _target_: cls_proj.steps.classify
permanences:
  data: null
  network: null
  scale:
    _target_: cls_proj.steps.Scale
progress:
  mode: none
run:
  objective: score
'''

SWEEP = '''\
# @package sweep
name: cls_lr
method: grid
metric: {name: score, goal: maximize}
parameters:
  processes.train.lr:
    values: [0.1, 0.2]
backend: local
'''

OPTUNA = '''\
# @package _global_
defaults:
  - override /hydra/sweeper: optuna
  - override /hydra/sweeper/sampler: random
hydra:
  sweeper:
    direction: maximize
    n_trials: 2
    n_jobs: 1
    sampler: {seed: 0}
    params:
      processes.train.hidden: range(8, 64)
'''


def score(lr: float = 1e-2, hidden: int = 32, epochs: int = 3, factor: float = 2.0) -> float:
    """What ``classify`` returns."""
    return factor * (epochs + hidden) * lr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The project directory (the working directory of every run): ``cls_proj/`` and ``conf/``."""
    files = {"cls_proj/__init__.py": "", "cls_proj/steps.py": STEPS, "conf/experiment/cls.yaml": EXPERIMENT,
             "conf/sweep/cls_lr.yaml": SWEEP, "conf/sweep/cls_typo.yaml": SWEEP.replace("train.lr:", "train.lrr:"),
             "conf/hparams_search/cls_optuna.yaml": OPTUNA}
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def cls(*args: str) -> tuple[str, ...]:
    """``--config-dir conf +experiment=cls`` and ``args``."""
    return ("--config-dir", "conf", "+experiment=cls", *args)


def test_cfg_job_shows_every_default(run_tipi: RunTipi, project: Path) -> None:
    job = yaml.safe_load(run_tipi(*cls("--cfg", "job"), check=True).stdout)
    assert job["processes"] == {"train": {"_target_": "cls_proj.steps.classify", "force": False, "epochs": 3,
                                          "lr": 0.01, "hidden": 32}}
    assert job["permanences"]["scale"] == {"_target_": "cls_proj.steps.Scale", "factor": 2.0, "label": "scale"}
    # tipi's own: a built-in process parameter its YAML does not list
    assert job["permanences"]["hparams"]["sweep_params"] is None


def test_help_lists_parameters_types_defaults_and_docs_without_torch(project: Path) -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tipi", *cls("processes.train.lr=0.5", "--help")],
                          cwd=project, env=tipi_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout[proc.stdout.index("== Processes and permanences =="):]
    assert "processes.train: cls_proj.steps.classify\n" in text
    assert "Pretend to train a classifier; the score depends on every option." in text
    assert re.search(r"^ +lr: float += 0\.01 +config: 0\.5$", text, re.MULTILINE), text
    assert re.search(r"^ +hidden: int += 32$", text, re.MULTILINE), text
    assert "permanences.scale: cls_proj.steps.Scale" in text and "Scales the score" in text
    assert re.search(r"^ +factor: float += 2\.0$", text, re.MULTILINE), text
    # tipi's own permanences, including one the pipeline lists by reference
    assert "progress (permanences.progress): tipi.permanences.progress" in text
    assert not re.search(r"^import time:.*\| *torch(\.|$)", proc.stderr, re.MULTILINE), "--help imported torch"


def test_a_single_run_takes_parameters_the_yaml_does_not_list(run_tipi: RunTipi, project: Path) -> None:
    run_tipi(*cls("processes.train.lr=0.5", "permanences.scale.factor=3", "+processes.train.epochs=1"), check=True)
    [run_dir] = run_dirs(project / "outputs")
    assert read_json(run_dir / "run.json")["objective"] == pytest.approx(score(lr=0.5, factor=3, epochs=1))
    stored = OmegaConf.load(run_dir / ".hydra" / "config.yaml")  # the values the run used, defaults included
    assert OmegaConf.to_container(stored.processes.train) == {
        "_target_": "cls_proj.steps.classify", "force": False, "epochs": 1, "lr": 0.5, "hidden": 32}
    assert (stored.permanences.scale.factor, stored.permanences.scale.label) == (3, "scale")


def test_a_multirun_over_two_parameters(run_tipi: RunTipi, project: Path) -> None:
    run_tipi("-m", *cls("processes.train.lr=0.1,0.2", "permanences.scale.factor=1,3"), check=True)
    [summary] = project.glob("multirun/*/*/summary.csv")
    rows = list(csv.DictReader(summary.read_text().splitlines()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"succeeded"}
    got = sorted(float(r["objective"]) for r in rows)
    assert got == pytest.approx(sorted(score(lr=lr, factor=f) for lr in (0.1, 0.2) for f in (1, 3)))


def test_a_multirun_on_submitit_workers(run_tipi: RunTipi, project: Path) -> None:
    # each job's config is composed again in its own worker process: tipi.params is installed there too
    run_tipi("-m", *cls("launcher=submitit_local", "processes.train.hidden=1,2"), check=True)
    [summary] = project.glob("multirun/*/*/summary.csv")
    rows = list(csv.DictReader(summary.read_text().splitlines()))
    assert sorted(float(r["objective"]) for r in rows) == pytest.approx([score(hidden=1), score(hidden=2)])


def test_a_wandb_sweep_sets_a_parameter_of_the_function(run_tipi: RunTipi, project: Path) -> None:
    run_tipi(*cls("logger=wandb", "+sweep=cls_lr"), check=True)
    [sweep_csv] = project.rglob("sweep_summary.csv")
    runs = sorted(p for p in sweep_csv.parent.iterdir() if (p / "run.json").is_file())
    assert len(runs) == 2
    for run_dir, lr in zip(runs, (0.1, 0.2), strict=True):
        stored = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
        assert (stored.processes.train.lr, stored.processes.train.hidden) == (lr, 32)
        assert read_json(run_dir / "run.json")["objective"] == pytest.approx(score(lr=lr))


def test_optuna_searches_a_parameter_of_the_function(run_tipi: RunTipi, project: Path) -> None:
    run_tipi("-m", *cls("+hparams_search=cls_optuna"), check=True)
    jobs = [p.parent.parent for p in project.glob("multirun/*/*/*/.hydra/config.yaml")]
    assert len(jobs) == 2
    for job in jobs:
        overrides = list(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
        assert next(o for o in overrides if "hidden" in o).startswith("processes.train.hidden=")  # no "+"
        hidden = OmegaConf.load(job / ".hydra" / "config.yaml").processes.train.hidden
        assert 8 <= hidden < 64
        assert read_json(job / "run.json")["objective"] == pytest.approx(score(hidden=hidden))


def test_a_misspelt_parameter_is_refused_with_the_valid_ones(run_tipi: RunTipi, project: Path) -> None:
    for args in (cls("processes.train.lrr=0.1"), ("-m", *cls("processes.train.lrr=0.1,0.2"))):
        proc = run_tipi(*args)
        assert proc.returncode == 1
        assert "processes.train.lrr: unknown parameter 'lrr'. Valid: epochs, force, hidden, lr" in proc.stderr
        assert "Did you mean 'lr'?" in proc.stderr
        assert "summary" not in proc.stderr and "Traceback" not in proc.stderr  # the error only
    proc = run_tipi(*cls("permanences.scale.factr=1"))
    assert "permanences.scale.factr: unknown parameter 'factr'. Valid: factor, label" in proc.stderr
    proc = run_tipi(*cls("processes.trian.lr=1"))
    assert "unknown process 'trian'" in proc.stderr and "Did you mean 'train'?" in proc.stderr
    proc = run_tipi(*cls("+sweep=cls_typo"))  # a sweep stops before its first run, not after three failed ones
    assert proc.returncode == 1
    assert "sweep.parameters.processes.train.lrr: unknown parameter 'lrr'" in proc.stderr
    assert "Did you mean 'lr'?" in proc.stderr
    assert not list(project.rglob("run.json"))  # nothing ran


def test_a_target_that_does_not_import_still_gets_the_builders_error(run_tipi: RunTipi, project: Path) -> None:
    proc = run_tipi(*cls("processes.train._target_=cls_proj.nowhere.fit", "processes.train.lr=0.1"))
    assert proc.returncode == 1
    assert "processes.train._target_" in proc.stderr and "cls_proj.nowhere" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_built_in_process_takes_a_parameter_its_yaml_does_not_list(run_tipi: RunTipi, tmp_path: Path) -> None:
    # tipi's network permanence: checkpoint_dir is in its signature, not in config.yaml
    proc = run_tipi("+experiment=seg", "debug=fast", "progress=none", "~processes.validate", "~processes.test",
                    "~processes.result", "run.objective=val/mean_iou", "permanences.network.checkpoint_dir=ckpts",
                    "processes.train.force=true", check=True)
    [run_dir] = run_dirs(tmp_path / "outputs")
    assert (run_dir / "ckpts" / "last.pt").is_file(), proc.stderr
    stored = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert stored.permanences.network.checkpoint_dir == "ckpts" and stored.processes.train.force is True
