"""``tipi-runs reproduce``: a run, a job of a multirun (local and SLURM), a user project at its recorded commit.

Every run is the real CLI in a subprocess, on the tiniest pipeline there is
(16 images of 16 px, one epoch, no figures), with ``run.deterministic=true`` on
the CPU, so a reproduction must match bit for bit. The original runs are made
once per module and shared; the bad inputs are refused before anything runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import read_json, tipi_env
from tests.integration.slurm_helpers import slurm_cluster  # noqa: F401 - a fixture, used through usefixtures

TINY = ("debug=fast", "model=unet_small", "progress=none", "device=cpu", "data.limit_train=16", "data.limit_val=8",
        "data.limit_test=8", "data.image_size=16", "~processes.result", "processes.train.figures_every_n_epochs=0",
        "run.deterministic=true")
# a user's experiment in a config tree of their own (the multirun below is launched with --config-dir)
TINY_EXPERIMENT = "# @package _global_\nseed: 5\ndata:\n  noise: 0.2\n"


def tipi(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m tipi ARGS`` in ``cwd``; must succeed."""
    proc = subprocess.run([sys.executable, "-m", "tipi", *args], cwd=cwd, env=tipi_env(), capture_output=True,
                          text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"tipi {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def reproduce(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``tipi-runs reproduce ARGS`` (as ``python -m tipi.runs``) in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "tipi.runs", "reproduce", *args], cwd=cwd, env=env or tipi_env(),
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The ``--json`` comparison on stdout."""
    assert proc.stdout.strip(), proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def assert_bit_exact(result: dict[str, Any], original: Path) -> Path:
    """A reproduction that matches in every metric, the best epoch and both checkpoints' weights; its directory."""
    assert result["reproduced"] is True and result["differs"] == [], result["differs"]
    assert result["metrics"] and all(r["within"] and r["difference"] in (0, None) for r in result["metrics"])
    assert result["best_epoch"]["same"] is True
    assert [(w["checkpoint"], w["verdict"]) for w in result["weights"]] == [
        ("last.pt", "bit-identical"), ("best.pt", "bit-identical")]
    new = Path(result["reproduction"])
    record = read_json(new / "run.json")
    assert record["reproduces"] == str(original) and record["status"] == "succeeded"
    assert (new / "figures" / "reproduce.png").stat().st_size > 0
    assert read_json(new / "reproduce.json")["reproduced"] is True
    return new


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One deterministic single run on the CPU, shared by the tests below."""
    cwd = tmp_path_factory.mktemp("single")
    tipi(*TINY, "hydra.run.dir=outputs/original", cwd=cwd)
    return cwd / "outputs" / "original"


def test_a_deterministic_cpu_run_is_reproduced_bit_exactly(original: Path) -> None:
    recorded = read_json(original / "run.json")
    assert recorded["deterministic"] is True and recorded["device"]["type"] == "cpu"
    assert recorded["cwd"] == str(original.parent.parent) and "data" not in recorded, "generated data: no folder"
    proc = reproduce(str(original), "--json", cwd=original.parent.parent)
    assert proc.returncode == 0, proc.stderr
    result = report(proc)
    new = assert_bit_exact(result, original)
    assert new.parent.parent == original.parent.parent / "outputs", "a new run directory, under outputs/"
    assert result["config"] == [] and result["overrides_added"] == []
    assert result["added_by_reproduce"] == ["seed=0"], "the recorded seed, named"
    assert "should repeat bit for bit" in result["deterministic"]
    assert {r["what"]: r["same"] for r in result["environment"]}["device"] is True


def test_an_added_override_is_named_and_the_difference_fails(original: Path) -> None:
    proc = reproduce(str(original), "optimizer.lr=0.01", "--out", str(original.parent / "faster"),
                     cwd=original.parent.parent)
    assert proc.returncode == 3, proc.stderr
    out = proc.stdout
    assert "overrides added: optimizer.lr=0.01" in out
    assert "config differs: optimizer.lr 0.003 -> 0.01" in out
    assert "weights last.pt: different (" in out and "largest difference" in out
    assert "NOT reproduced within 1e-06:" in out and "(overrides added: optimizer.lr=0.01)" in out
    assert read_json(original.parent / "faster" / "run.json")["reproduces"] == str(original)


def test_dry_run_prints_the_command_and_differences_and_runs_nothing(original: Path) -> None:
    out = original.parent / "never"
    proc = reproduce(str(original), "--dry-run", "optimizer.lr=0.01", "--out", str(out), cwd=original.parent.parent)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "(dry run: nothing is run)" in text
    command = next(line for line in text.splitlines() if line.startswith("  command: "))
    assert " -m tipi debug=fast " in command and "run.deterministic=true" in command
    assert "optimizer.lr=0.01 seed=0" in command and f"hydra.run.dir='{out}'" in command
    assert "run.deterministic    true" in text and "differs" in text.split("overrides added  ")[-1]
    assert not out.exists(), "nothing ran"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local multirun (one job: each costs a run), launched with a config tree of its own (``--config-dir``)."""
    cwd = tmp_path_factory.mktemp("sweep")
    (cwd / "conf" / "experiment").mkdir(parents=True)
    (cwd / "conf" / "experiment" / "tiny.yaml").write_text(TINY_EXPERIMENT)
    tipi("-m", "--config-dir", "conf", "+experiment=tiny", *TINY, "optimizer.lr=0.002",
         "hydra.sweep.dir=multirun/s", cwd=cwd)
    return cwd / "multirun" / "s"


def test_a_job_of_a_local_multirun_is_reproduced_as_a_single_run(sweep: Path) -> None:
    job = sweep / "0"
    proc = reproduce(str(job), "--json", "--out", str(sweep.parent / "again"), cwd=sweep.parent.parent)
    assert proc.returncode == 0, proc.stderr
    result = report(proc)
    new = assert_bit_exact(result, job)
    assert result["launcher"] == "a single run here" and "--multirun" not in result["command"]
    assert result["command"][3:5] == ["--config-dir", str(sweep.parent.parent / "conf")], "the recorded config tree"
    record = read_json(new / "run.json")
    assert "optimizer.lr=0.002" in record["overrides"] and record["seed"] == 5, "the job's value, the experiment's seed"


def test_bad_input_is_one_message(original: Path, sweep: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    moved = tmp_path / "moved-job"  # a job whose config tree is gone
    shutil.copytree(sweep / "0", moved)
    hydra = yaml.safe_load((moved / ".hydra" / "hydra.yaml").read_text())
    for source in hydra["hydra"]["runtime"]["config_sources"]:
        if source["provider"] == "command-line":
            source["path"] = str(tmp_path / "gone" / "conf")
    (moved / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    repo = tmp_path / "repo"  # a repository that lacks the recorded commit
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    lost = tmp_path / "lost-commit"
    shutil.copytree(original, lost)
    record = read_json(lost / "run.json")
    record.update(git={"commit": "0123456789abcdef" * 2 + "01234567", "dirty": False, "root": str(repo)})
    (lost / "run.json").write_text(json.dumps(record))
    cases = [
        ((str(empty),), f"Error: '{empty}' is neither a run nor a multirun"),
        ((str(sweep),), f"Error: '{sweep}' is a sweep, not a run"),
        ((str(moved),), f"Error: the run's config tree '{tmp_path / 'gone' / 'conf'}' (its --config-dir) is gone"),
        ((str(original), "--at-commit"), "Error: --at-commit: the run recorded no git commit"),
        ((str(lost), "--at-commit"), f"is not in the repository {repo}"),
    ]
    for args, message in cases:
        proc = reproduce(*args, "--dry-run", cwd=tmp_path)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.count("Error") == 1
    assert "--config-dir <path>" in reproduce(str(moved), "--dry-run", cwd=tmp_path).stderr, "how to point at it"
    pointed = reproduce(str(moved), "--dry-run", "--config-dir", str(sweep.parent.parent / "conf"), cwd=tmp_path)
    assert pointed.returncode == 0, pointed.stderr


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_a_job_of_a_slurm_sweep_is_reproduced_on_its_recorded_launcher(tmp_path: Path) -> None:
    """As a single run here, a SLURM job is any job (the local multirun's test); here it goes back to SLURM."""
    tipi("-m", *TINY, "launcher=slurm", "seed=3", "hydra.sweep.dir=multirun/slurm", cwd=tmp_path)
    job = tmp_path / "multirun" / "slurm" / "0"
    assert read_json(job / "run.json")["attempts"][0]["slurm"]
    there = reproduce(str(job), "--json", "--launcher", "recorded", "--out", str(tmp_path / "again"), cwd=tmp_path)
    assert there.returncode == 0, there.stderr
    result = report(there)
    new = assert_bit_exact(result, job)
    assert new == tmp_path / "again" / "0", "a one-job multirun on the recorded launcher"
    assert result["command"][3] == "--multirun" and "launcher=slurm" in result["command"]
    assert read_json(new / "run.json")["attempts"][0]["slurm"]["slurm_job_id"], "it ran as a SLURM job"


STEPS = '''\
"""A user's project: one step whose result depends on this module's code."""

from tipi import pipeline_process
from tipi.helpers import logger

FACTOR = {factor}


@pipeline_process
def score(lr: float = 0.5) -> float:
    """Pretend to train; the score is FACTOR * lr."""
    value = FACTOR * lr
    logger.log({{"score": value}}, step=0)
    return value
'''
EXPERIMENT = """\
# @package _global_
defaults:
  - override /pipeline: null
  - override /scheduler: none
processes:
  step:
    _target_: proj.steps.score
permanences:
  data: null
  network: null
progress:
  mode: none
run:
  objective: score
"""


def git(repo: Path, *args: str) -> str:
    """``git ARGS`` in ``repo`` (a throwaway identity); its output."""
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_at_commit_runs_the_recorded_code_with_its_uncommitted_changes(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    for name, text in {"proj/__init__.py": "", "proj/steps.py": STEPS.format(factor=2.0), ".gitignore": "outputs/\n",
                       "conf/experiment/score.yaml": EXPERIMENT}.items():
        (proj / name).parent.mkdir(parents=True, exist_ok=True)
        (proj / name).write_text(text)
    git(proj, "init", "-q")
    git(proj, "add", ".")
    git(proj, "commit", "-qm", "factor 2")
    recorded_commit = git(proj, "rev-parse", "HEAD")
    (proj / "proj" / "steps.py").write_text(STEPS.format(factor=3.0))  # run with an uncommitted change
    tipi("--config-dir", "conf", "+experiment=score", "hydra.run.dir=outputs/original", cwd=proj)
    original = proj / "outputs" / "original"
    record = read_json(original / "run.json")
    assert record["objective"] == 1.5 and record["git"]["commit"] == recorded_commit
    assert record["git"]["dirty"] is True and record["git"]["diff"] == "git.diff"
    assert "+FACTOR = 3.0" in (original / "git.diff").read_text()
    (proj / "proj" / "steps.py").write_text(STEPS.format(factor=5.0))  # the code moves on
    git(proj, "commit", "-qam", "factor 5")

    plain = reproduce(str(original), "--dry-run", cwd=proj).stdout
    assert "git commit" in plain and recorded_commit in plain and git(proj, "rev-parse", "HEAD") in plain
    assert "applied only with --at-commit" in plain
    env = tipi_env(TMPDIR=str(tmp_path))  # where the worktree goes, to see it removed
    proc = reproduce(str(original), "--at-commit", "--json", "--out", str(proj / "outputs" / "again"), cwd=proj,
                     env=env)
    assert proc.returncode == 0, proc.stderr
    result = report(proc)
    assert result["reproduced"] is True and result["at_commit"] is True and result["commit"] == recorded_commit
    new = read_json(proj / "outputs" / "again" / "run.json")
    assert new["objective"] == 1.5, "the recorded commit's code with the run's uncommitted change, not FACTOR 5"
    assert new["git"]["commit"] == recorded_commit and new["reproduces"] == str(original)
    assert git(proj, "worktree", "list").count("\n") == 0, "the worktree is removed"
    assert not list(tmp_path.glob("tipi-reproduce-*")), "and its temporary directory"
    assert os.path.exists(proj / "proj" / "steps.py") and "FACTOR = 5.0" in (proj / "proj" / "steps.py").read_text()
