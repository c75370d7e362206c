"""The front door: ``python -m tipi`` in a subprocess, with real Hydra composition."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import RunTipi, read_json, run_dirs, tipi_env

FAST = ("+experiment=seg", "debug=fast", "progress=none")


def test_default_run_leaves_a_run_directory(run_tipi: RunTipi, tmp_path: Path) -> None:
    run_tipi("debug=fast", check=True)
    [run_dir] = run_dirs(tmp_path / "outputs")
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    record = read_json(run_dir / "run.json")
    assert record["status"] == "succeeded"
    assert record["seed"] == 0
    assert isinstance(record["objective"], float)
    assert {"python", "torch", "hydra-core", "tipi"} <= set(record["versions"])
    assert record["attempts"][0]["status"] == "succeeded"


def test_multirun_gives_one_directory_per_job_and_a_summary(run_tipi: RunTipi, tmp_path: Path) -> None:
    proc = run_tipi("-m", *FAST, "seed=1,2,3", check=True)
    jobs = run_dirs(tmp_path / "multirun")
    assert len(jobs) == 3
    assert sorted(read_json(j / "run.json")["seed"] for j in jobs) == [1, 2, 3]
    [summary] = list((tmp_path / "multirun").rglob("summary.csv"))
    rows = list(csv.DictReader(summary.read_text().splitlines()))
    assert [r["status"] for r in rows] == ["succeeded"] * 3
    assert [r["overrides"].split()[-1] for r in rows] == ["seed=1", "seed=2", "seed=3"]
    assert "multirun summary" in proc.stderr


def test_unimportable_target_is_reported_without_traceback(run_tipi: RunTipi) -> None:
    proc = run_tipi("+processes.bogus._target_=no.such.Thing")
    assert proc.returncode != 0
    assert "processes.bogus._target_" in proc.stderr
    assert "no.such.Thing" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_typo_in_the_last_process_stops_the_run_before_anything_starts(run_tipi: RunTipi,
                                                                         tmp_path: Path) -> None:
    proc = run_tipi(*FAST, "+processes.result.num_sample=3")
    assert proc.returncode != 0
    assert "processes.result.num_sample" in proc.stderr
    assert "Did you mean 'num_samples'?" in proc.stderr
    assert not list(tmp_path.rglob("run.json")), "nothing may run before the whole config is checked"
    assert not list(tmp_path.rglob("metrics.jsonl"))


def test_hydra_errors_stay_readable(run_tipi: RunTipi) -> None:
    proc = run_tipi("model=unett")
    assert proc.returncode != 0
    assert "unet_small" in proc.stderr and "unett" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_tipi("seed=[1,")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr


def test_help_lists_groups_and_cfg_job_runs_nothing(run_tipi: RunTipi, tmp_path: Path) -> None:
    help_text = run_tipi("--help", check=True).stdout
    for group in ("data:", "model:", "optimizer:", "logger:", "progress:", "pipeline:", "launcher:", "debug:"):
        assert group in help_text
    assert "unet_small" in help_text
    cfg = run_tipi("+experiment=seg", "optimizer.lr=0.01", "--cfg", "job", check=True).stdout
    assert "lr: 0.01" in cfg and "permanences:" in cfg and "processes:" in cfg
    assert not (tmp_path / "outputs").exists()


def test_cheap_paths_never_import_torch_or_wandb(tmp_path: Path) -> None:
    for args in (["-c", "import tipi"], ["-m", "tipi", "--help"], ["-m", "tipi", "--cfg", "job"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=tmp_path, env=tipi_env(),
                              capture_output=True, text=True, timeout=60, check=True)
        modules = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
        assert "torch" not in modules, args
        assert "wandb" not in modules, args


def test_run_record_has_git_state_when_run_from_a_git_tree(run_tipi: RunTipi, tmp_path: Path) -> None:
    for cmd in (["git", "init", "-q"], ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit",
                                         "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(cmd, cwd=tmp_path, check=True)
    run_tipi(*FAST, check=True)
    [run_dir] = run_dirs(tmp_path / "outputs")
    git = read_json(run_dir / "run.json")["git"]
    assert len(git["commit"]) == 40 and git["dirty"] is False


USER_PACKAGE = '''
from pathlib import Path
from tipi import Permanence, PipelineProcess


class Counter(Permanence):
    """A user's own permanence."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def initialize(self) -> None:
        self.value += 1

    def cleanup(self) -> None:
        (self.controller.run_dir / "cleaned").write_text(str(self.value))


class Report(PipelineProcess):
    """A user's own process."""

    requires = {"counter": Counter}

    def __init__(self, controller, force: bool = False, message: str = "hi") -> None:
        super().__init__(controller, force)
        self.message = message

    def execute(self) -> float:
        counter = self.controller.get_permanence("counter", Counter)
        (self.controller.run_dir / "report.txt").write_text(f"{self.message} {counter.value}")
        return float(counter.value)
'''

USER_EXPERIMENT = '''# @package _global_
defaults:
  - override /pipeline: mine
permanences:
  data: null
  network: null
  counter:
    _target_: myproj.Counter
    start: 41
run:
  objective: null
'''

USER_PIPELINE = '''# @package processes
report:
  _target_: myproj.Report
  message: hello
'''


def test_a_users_own_project_runs_through_tipi(tmp_path: Path, run_tipi: RunTipi) -> None:
    project = tmp_path / "project"
    (project / "myproj").mkdir(parents=True)
    (project / "myproj" / "__init__.py").write_text(textwrap.dedent(USER_PACKAGE))
    (project / "conf" / "experiment").mkdir(parents=True)
    (project / "conf" / "pipeline").mkdir(parents=True)
    (project / "conf" / "experiment" / "mine.yaml").write_text(USER_EXPERIMENT)
    (project / "conf" / "pipeline" / "mine.yaml").write_text(USER_PIPELINE)
    env = tipi_env(PYTHONPATH=f"{project}")
    run_tipi("--config-dir", str(project / "conf"), "+experiment=mine", "progress=none",
             cwd=project, env=env, check=True)
    [run_dir] = run_dirs(project / "outputs")
    assert (run_dir / "report.txt").read_text() == "hello 42"
    assert (run_dir / "cleaned").read_text() == "42"
    assert read_json(run_dir / "run.json")["objective"] == 42.0
    # A typo in the user's own process is caught like any other.
    proc = run_tipi("--config-dir", str(project / "conf"), "+experiment=mine", "+processes.report.mesage=x",
                    cwd=project, env=env)
    assert proc.returncode != 0 and "Did you mean 'message'?" in proc.stderr
