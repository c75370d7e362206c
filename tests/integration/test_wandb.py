"""``logger=wandb`` through the real CLI, with WandB offline; runs are read back with WandB's own reader.

``wandb leet inspect --json`` reads a run's ``.wandb`` transaction log (config,
summary, state), so every assertion is about what a later ``wandb sync`` would
upload. Nothing here reaches the network: WandB is offline, or pointed at a
closed port on localhost.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunTipi, read_json, read_jsonl, run_dirs, tipi_env
from tipi.core.errors import ConfigError
from tipi.permanences.wandb import requested_mode

FAST = ("+experiment=seg", "debug=fast", "progress=none")
# Only the data-load step: for what happens around a run, not in it (so no process logs the objective).
LOAD_ONLY = ("scheduler=none", "~processes.train", "~processes.validate", "~processes.test", "~processes.result",
             "run.objective=null")


def wandb_inspect(run_dir: Path, run_id: str, summary: bool = True) -> Any:
    """WandB's own reading of the offline run ``run_id`` kept in ``<run_dir>/wandb/``."""
    found = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    assert found, f"no offline WandB run {run_id} in {run_dir / 'wandb'}"
    args = ["--summary", "--json"] if summary else ["--json"]
    proc = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", *args, str(found[-1])],
                          capture_output=True, text=True, timeout=60, env=tipi_env(), check=True)
    if summary:
        return json.loads(proc.stdout)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def no_credentials_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """WANDB_MODE unset and no API key anywhere WandB looks (env, netrc, settings)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = tipi_env(HOME=str(home), WANDB_CONFIG_DIR=str(home / ".config" / "wandb"),
                   NETRC=str(home / "no-netrc"), **extra)
    env.pop("WANDB_MODE")
    if "WANDB_API_KEY" not in extra:
        env.pop("WANDB_API_KEY", None)
    return env


@pytest.mark.parametrize(("env", "config", "expected"), [
    (None, None, None),  # online when a key is configured, else offline
    (None, "disabled", "disabled"),
    ("offline", "online", "offline"),  # WANDB_MODE is the machine's switch and wins
    ("", "offline", "offline"),  # empty means unset
    ("dryrun", None, "offline"),  # WandB's old spelling
])
def test_wandb_mode_comes_from_wandb_mode_then_the_config(monkeypatch: pytest.MonkeyPatch, env: str | None,
                                                          config: str | None, expected: str | None) -> None:
    if env is None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
    else:
        monkeypatch.setenv("WANDB_MODE", env)
    assert requested_mode(config) == expected


def test_a_misspelt_mode_is_a_config_error_naming_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.raises(ConfigError) as info:
        requested_mode("ofline")
    assert info.value.key == "logger.trackers.wandb.mode" and "offline" in info.value.message


def test_an_offline_run_lives_in_the_run_directory_and_reads_back(run_tipi: RunTipi, tmp_path: Path) -> None:
    run_tipi(*FAST, "logger=wandb", "optimizer.lr=0.002", "run.tags=[mine]", "run.group=g1", check=True)
    [run_dir] = run_dirs(tmp_path / "outputs")
    record = read_json(run_dir / "run.json")
    assert record["status"] == "succeeded" and record["wandb_mode"] == "offline"
    run_id = record["wandb_run_id"]
    info = wandb_inspect(run_dir, run_id)
    assert (info["run_id"], info["state"], info["exit_code"]) == (run_id, "finished", 0)
    assert (info["name"], info["tags"], info["project"]) == ("tipi", ["mine"], "tipi")
    config = info["config"]
    assert config["optimizer"]["lr"] == 0.002 and config["model"]["_target_"].endswith("UNet")
    assert config["run"]["group"] == "g1" and "hydra" not in config
    # WandB's summary holds the same final metrics as run.json (and metrics.jsonl).
    for key in ("train/loss", "val/mean_iou", "test/mean_iou"):
        assert info["summary"][key] == pytest.approx(record["metrics"][key])
    assert info["summary"]["predictions"]["_type"] == "image-file"  # the result's prediction grid
    assert any("test/mean_iou" in row for row in read_jsonl(run_dir / "metrics.jsonl"))
    [run_record] = [r for r in wandb_inspect(run_dir, run_id, summary=False) if r["type"] == "run"]
    assert run_record["run"]["run_group"] == "g1"


@pytest.mark.slow
def test_each_multirun_job_gets_its_own_wandb_run(run_tipi: RunTipi, tmp_path: Path) -> None:
    run_tipi("-m", *FAST, "logger=wandb", "seed=1,2", check=True)
    jobs = run_dirs(tmp_path / "multirun")
    assert len(jobs) == 2
    ids = [read_json(job / "run.json")["wandb_run_id"] for job in jobs]
    assert len(set(ids)) == 2
    for job, run_id in zip(jobs, ids, strict=True):
        info = wandb_inspect(job, run_id)
        assert info["state"] == "finished"
        assert info["config"]["seed"] == read_json(job / "run.json")["seed"]
        assert len(list((job / "wandb").glob("offline-run-*"))) == 1


def test_running_a_directory_again_continues_the_same_wandb_run(run_tipi: RunTipi, tmp_path: Path) -> None:
    run_tipi(*FAST, *LOAD_ONLY, "logger=wandb", check=True)
    [run_dir] = run_dirs(tmp_path / "outputs")
    first = read_json(run_dir / "run.json")["wandb_run_id"]
    run_tipi(f"resume={run_dir}", check=True)
    record = read_json(run_dir / "run.json")
    assert record["wandb_run_id"] == first and len(record["attempts"]) == 2
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{first}"))) == 2  # both attempts, one run id
    assert wandb_inspect(run_dir, first)["run_id"] == first


@pytest.mark.parametrize(("action", "code", "status"), [("raise", 1, "failed"), ("sigterm", 143, "interrupted")])
def test_a_failed_or_interrupted_run_still_finishes_its_wandb_run(run_tipi: RunTipi, tmp_path: Path,
                                                                 action: str, code: int, status: str) -> None:
    proc = run_tipi(*FAST, *LOAD_ONLY, "logger=wandb", "+processes.boom._target_=tests.doubles.RecordingProcess",
                    f"+processes.boom.action={action}")
    assert proc.returncode == code, proc.stderr
    [run_dir] = run_dirs(tmp_path / "outputs")
    record = read_json(run_dir / "run.json")
    assert record["status"] == status
    info = wandb_inspect(run_dir, record["wandb_run_id"])
    assert info["state"] != "running" and info["exit_code"] == code


def test_online_mode_without_an_api_key_is_a_clear_error(run_tipi: RunTipi, tmp_path: Path) -> None:
    start = time.perf_counter()
    proc = run_tipi(*FAST, *LOAD_ONLY, "logger=wandb", "logger.trackers.wandb.mode=online",
                    env=no_credentials_env(tmp_path))
    assert proc.returncode == 1
    assert "logger.trackers.wandb.mode" in proc.stderr and "no API key" in proc.stderr and "wandb login" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.perf_counter() - start < 60, "must fail at once, not wait for a server"


def test_no_mode_and_no_api_key_logs_offline_and_says_so(run_tipi: RunTipi, tmp_path: Path) -> None:
    proc = run_tipi(*FAST, *LOAD_ONLY, "logger=wandb", env=no_credentials_env(tmp_path), check=True)
    assert "no API key configured, logging offline" in proc.stdout + proc.stderr
    [run_dir] = run_dirs(tmp_path / "outputs")
    record = read_json(run_dir / "run.json")
    assert record["wandb_mode"] == "offline"
    assert wandb_inspect(run_dir, record["wandb_run_id"])["state"] == "finished"


@pytest.mark.slow
def test_an_unreachable_server_falls_back_to_offline_instead_of_hanging(run_tipi: RunTipi, tmp_path: Path) -> None:
    # An API key, but the server is a closed port on this machine.
    env = no_credentials_env(tmp_path, WANDB_API_KEY="x" * 40, WANDB_BASE_URL="http://127.0.0.1:9")
    start = time.perf_counter()
    proc = run_tipi(*FAST, *LOAD_ONLY, "logger=wandb", "logger.trackers.wandb.init_timeout=2", env=env, check=True)
    assert "server unreachable" in proc.stdout + proc.stderr
    [run_dir] = run_dirs(tmp_path / "outputs")
    assert read_json(run_dir / "run.json")["wandb_mode"] == "offline"
    assert time.perf_counter() - start < 120
    # Demanding online there is an error, not a silent downgrade.
    proc = run_tipi(*FAST, *LOAD_ONLY, "logger=wandb", "logger.trackers.wandb.mode=online",
                    "logger.trackers.wandb.init_timeout=2", env=env)
    assert proc.returncode == 1 and "logger.trackers.wandb.mode" in proc.stderr and "Traceback" not in proc.stderr
