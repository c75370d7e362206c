"""WandB sweeps through the real CLI: offline with WandB's own engine, online with a fake server.

Each sweep run's composed config is read back from its ``.hydra/config.yaml``.
The one fake is WandB's server, at the ``wandb.sweep`` / ``wandb.agent``
boundary (:func:`install_fake_wandb`, installed in the CLI's own process); the
runs themselves log with real WandB, offline.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from tests.conftest import RunTipi, read_json, read_jsonl, tipi_env
from tests.integration.test_wandb import wandb_inspect

FAST = ("+experiment=seg", "debug=fast", "progress=none")
# Training validates every epoch, which gives val/mean_iou (the sweeps' metric); the rest is not needed
# (and the run's objective, test/mean_iou by default, must be a metric the pipeline logs).
TRAIN_ONLY = ("~processes.validate", "~processes.test", "~processes.result", "run.objective=val/mean_iou")
BASE_CHANNELS = {"unet": 16, "unet_small": 8}


def sweep_dir(root: Path) -> Path:
    """The one directory under ``root`` that a sweep ran in."""
    [found] = [p.parent for p in root.rglob("sweep_summary.csv")]
    return found


def sweep_runs(directory: Path) -> list[Path]:
    """The sweep's run directories (those with a ``run.json``), by name."""
    return sorted(p for p in directory.iterdir() if p.is_dir() and (p / "run.json").is_file())


def summary(directory: Path) -> list[dict[str, str]]:
    """``sweep_summary.csv`` as rows."""
    return list(csv.DictReader((directory / "sweep_summary.csv").read_text().splitlines()))


def check_composed(run_dir: Path, model: str, lr: float) -> None:
    """The run's stored config is what Hydra composes for ``model=<model> optimizer.lr=<lr>``."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert cfg.model.base_channels == BASE_CHANNELS[model]
    assert cfg.optimizer.lr == pytest.approx(lr)
    assert "sweep" not in cfg and "hydra" not in cfg
    assert list(OmegaConf.load(run_dir / ".hydra" / "overrides.yaml"))[-2:] == [f"model={model}",
                                                                                f"optimizer.lr={lr!r}"]


@pytest.mark.slow
def test_offline_grid_sweep_runs_each_point_in_its_own_directory(run_tipi: RunTipi, tmp_path: Path) -> None:
    proc = run_tipi(*FAST, *TRAIN_ONLY, "logger=wandb", "+sweep=seg_grid", check=True)
    directory = sweep_dir(tmp_path / "outputs")
    runs = sweep_runs(directory)
    assert [r.name for r in runs] == ["0", "1", "2", "3"]
    points = set()
    for run in runs:
        record = read_json(run / "run.json")
        params = record["sweep"]["params"]
        check_composed(run, params["model"], params["optimizer.lr"])
        points.add((params["model"], params["optimizer.lr"]))
        assert record["status"] == "succeeded"
        # Every run has its own offline WandB run, there to be synced later, grouped by the sweep.
        logged = wandb_inspect(run, record["wandb_run_id"])["config"]
        assert logged["optimizer"]["lr"] == params["optimizer.lr"] and logged["run"]["group"] == "seg_grid"
    assert points == {(m, lr) for m in ("unet", "unet_small") for lr in (1e-3, 3e-3)}
    assert len({read_json(r / "run.json")["wandb_run_id"] for r in runs}) == 4
    rows = summary(directory)
    assert [(r["run"], r["status"]) for r in rows] == [(str(i), "succeeded") for i in range(4)]
    assert {(r["model"], float(r["optimizer.lr"])) for r in rows} == points
    best = max(float(r["objective"]) for r in rows)
    sweep_record = read_json(directory / "run.json")
    assert sweep_record["status"] == "succeeded" and sweep_record["objective"] == pytest.approx(best)
    assert "sweep summary" in proc.stderr and "unet_small" in proc.stderr
    # the runs browser lists the sweep's trials, not the sweep as one run, and compares them as a multirun's
    listed = subprocess.run([sys.executable, "-m", "tipi.runs", "list", "--json"], cwd=tmp_path, env=tipi_env(),
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert sorted(Path(r["run_dir"]).name for r in json.loads(listed.stdout)) == ["0", "1", "2", "3"], listed.stdout
    compared = subprocess.run([sys.executable, "-m", "tipi.runs", "compare", str(directory)], cwd=tmp_path,
                              env=tipi_env(), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert compared.returncode == 0, compared.stderr
    assert (directory / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_offline_bayes_sweep_stops_at_its_run_cap(run_tipi: RunTipi, tmp_path: Path) -> None:
    run_tipi(*FAST, *TRAIN_ONLY, "+sweep=seg_lr", "sweep.run_cap=4", check=True)
    directory = sweep_dir(tmp_path / "outputs")
    runs = sweep_runs(directory)
    assert len(runs) == 4
    lrs = []
    for run in runs:
        params = read_json(run / "run.json")["sweep"]["params"]
        check_composed(run, params["model"], params["optimizer.lr"])
        lrs.append(params["optimizer.lr"])
    assert len(set(lrs)) == 4 and all(1e-4 <= lr <= 1e-2 for lr in lrs)
    rows = summary(directory)
    assert len(rows) == 4 and all(r["objective"] for r in rows)


EVIL_SWEEP = """# @package sweep
method: grid
parameters:
  model._target_:
    values: [os.system]
"""


def test_a_parameter_that_sets_a_target_is_refused_before_anything_runs(run_tipi: RunTipi, tmp_path: Path) -> None:
    conf = tmp_path / "conf" / "sweep"
    conf.mkdir(parents=True)
    (conf / "evil.yaml").write_text(EVIL_SWEEP)
    proc = run_tipi("--config-dir", str(tmp_path / "conf"), *FAST, "+sweep=evil")
    assert proc.returncode == 1
    assert "sweep.parameters.model._target_" in proc.stderr and "sweep.allow" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("run.json"))


# -- online, with WandB's server faked at wandb.sweep / wandb.agent -----------------------------------
def install_fake_wandb() -> None:
    """Replace ``wandb.sweep`` and ``wandb.agent`` in this process with a scripted server.

    ``wandb.agent`` hands each run its parameters the way WandB's agent does:
    ``WANDB_SWEEP_ID``, ``WANDB_RUN_ID`` and a parameter file named by
    ``WANDB_SWEEP_PARAM_PATH`` (which the real ``wandb.init`` then reads), and
    ``wandb.teardown()`` before each run.
    Calls are noted in ``$FAKE_WANDB_LOG``; ``$FAKE_WANDB_PROPOSALS`` lists the runs.
    """
    import wandb
    import yaml

    log_file = Path(os.environ["FAKE_WANDB_LOG"])
    proposals: list[dict[str, Any]] = json.loads(os.environ["FAKE_WANDB_PROPOSALS"])

    def note(event: dict[str, Any]) -> None:
        with log_file.open("a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")

    def sweep(sweep: dict[str, Any], entity: str | None = None, project: str | None = None,
              prior_runs: list[str] | None = None) -> str:
        note({"call": "sweep", "config": sweep, "project": project, "entity": entity})
        return "fakesweep"

    def agent(sweep_id: str, function: Any = None, entity: str | None = None, project: str | None = None,
              count: int | None = None, max_consecutive_failed_runs: int | None = None) -> None:
        note({"call": "agent", "sweep_id": sweep_id, "count": count, "project": project,
              "max_consecutive_failed_runs": max_consecutive_failed_runs})
        for i, params in enumerate(proposals[:count]):
            run_id = f"{sweep_id}-{i}"
            path = Path(os.environ.get("WANDB_DIR", "")) / "wandb" / f"sweep-{sweep_id}" / f"config-{run_id}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump({"wandb_version": 1, **{k: {"value": v} for k, v in params.items()}}))
            os.environ.update(WANDB_SWEEP_ID=sweep_id, WANDB_RUN_ID=run_id, WANDB_SWEEP_PARAM_PATH=str(path))
            wandb.teardown()  # as WandB's agent does: each run sets WandB up afresh from these variables
            try:
                function()
                note({"call": "run", "run_id": run_id, "ok": True})
            except Exception as exc:  # noqa: BLE001 - WandB's agent records a failed run and goes on
                note({"call": "run", "run_id": run_id, "ok": False, "error": str(exc)})
            finally:
                for key in ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH"):
                    os.environ.pop(key, None)

    wandb.sweep = sweep
    wandb.agent = agent


def run_with_fake_server(tmp_path: Path, proposals: list[dict[str, Any]],
                         *args: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """``python -m tipi <args>`` with the fake server installed; returns the process and the server's notes."""
    log_file = tmp_path / "fake-wandb.jsonl"
    # WANDB_MODE stays offline: the runs log offline, and nothing can reach a real server.
    env = tipi_env(FAKE_WANDB_LOG=str(log_file), FAKE_WANDB_PROPOSALS=json.dumps(proposals))
    code = ("from tests.integration.test_sweeps import install_fake_wandb; install_fake_wandb(); "
            "from tipi.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    return proc, read_jsonl(log_file) if log_file.exists() else []


PROPOSALS = [{"model": "unet_small", "optimizer.lr": 0.002}, {"model": "unet", "optimizer.lr": 0.0005},
             {"model": "unet", "optimizer.lr": 0.01}]


@pytest.mark.slow
def test_online_sweep_is_created_and_the_agent_runs_count_runs(tmp_path: Path) -> None:
    proc, notes = run_with_fake_server(tmp_path, PROPOSALS, *FAST, *TRAIN_ONLY, "logger=wandb",
                                       "+sweep=seg_grid", "sweep.backend=wandb", "sweep.count=2")
    assert proc.returncode == 0, proc.stderr
    created, agent, *runs = notes
    assert created["call"] == "sweep" and created["project"] == "tipi"
    # WandB gets its own format, parameter names as Hydra keys, tipi's keys taken out.
    assert created["config"] == {"name": "seg_grid", "method": "grid",
                                 "metric": {"name": "val/mean_iou", "goal": "maximize"},
                                 "parameters": {"model": {"values": ["unet", "unet_small"]},
                                                "optimizer.lr": {"values": [0.001, 0.003]}}}
    assert (agent["sweep_id"], agent["count"], agent["max_consecutive_failed_runs"]) == ("fakesweep", 2, 3)
    assert [(r["run_id"], r["ok"]) for r in runs] == [("fakesweep-0", True), ("fakesweep-1", True)]
    directory = sweep_dir(tmp_path / "outputs")
    assert [r.name for r in sweep_runs(directory)] == ["fakesweep-0", "fakesweep-1"]
    for run, params in zip(sweep_runs(directory), PROPOSALS, strict=False):
        check_composed(run, params["model"], params["optimizer.lr"])
        record = read_json(run / "run.json")
        # The run joined the sweep's run id; its WandB config carries the sweep's parameter values.
        assert record["wandb_run_id"] == run.name and record["sweep"]["id"] == "fakesweep"
        info = wandb_inspect(run, run.name)
        assert info["config"]["model"] == params["model"] and info["config"]["optimizer.lr"] == params["optimizer.lr"]
    assert [r["run"] for r in summary(directory)] == ["fakesweep-0", "fakesweep-1"]
    assert not (tmp_path / "wandb").exists(), "the agent's files belong in the sweep's directory"
    assert read_json(directory / "run.json")["sweep"]["id"] == "fakesweep"


@pytest.mark.slow
def test_joining_a_sweep_by_id_refuses_what_the_server_may_not_set(tmp_path: Path) -> None:
    evil = {"model._target_": "os.system"}
    proc, notes = run_with_fake_server(tmp_path, [evil, PROPOSALS[0]], *FAST, *TRAIN_ONLY, "logger=wandb",
                                       "+sweep=seg_lr", "sweep.id=existing42", "sweep.count=2")
    assert proc.returncode == 0, proc.stderr
    assert [n["call"] for n in notes] == ["agent", "run", "run"]  # joined: no sweep created
    agent, refused, ok = notes
    assert (agent["sweep_id"], agent["count"]) == ("existing42", 2)
    assert not refused["ok"] and "model._target_" in refused["error"]
    assert ok["ok"]
    directory = sweep_dir(tmp_path / "outputs")
    assert [r.name for r in sweep_runs(directory)] == ["existing42-1"]  # the refused run never started
    assert [r["status"] for r in summary(directory)] == ["failed", "succeeded"]
    assert "model._target_" in proc.stderr

