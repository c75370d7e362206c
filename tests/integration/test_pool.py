"""launcher=pool for real: jobs as processes, one per slot, machine-wide locks, a killed job, Ctrl-C, tipi runs.

GPUs are faked where the launcher lists them (``TIPI_FAKE_GPUS``): a small
Hydra app on tipi's pool records, in each job, the ``CUDA_VISIBLE_DEVICES``
and the slot it was given and when it started and ended; the tests check the
overlaps. The CPU pool runs tipi itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.conftest import RunTipi, read_json, tipi_env

APP = '''
import json, os, signal, sys, time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig

from tipi._hydra import register_launchers

register_launchers()


@hydra.main(version_base=None, config_path="conf", config_name="app")
def main(cfg):
    start = time.time()
    slot = json.loads(os.environ.get("TIPI_SLOT", "null"))
    if cfg.oom and len(slot["slots"]) == 1:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    out = Path(HydraConfig.get().runtime.output_dir)
    record = {"cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "slot": slot, "start": start,
              "threads": os.environ.get("OMP_NUM_THREADS"), "pid": os.getpid(), "num": HydraConfig.get().job.num}
    (out / "job.json").write_text(json.dumps(record))
    if cfg.kill:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(cfg.sleep)
    record["end"] = time.time()
    (out / "job.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
'''

CONF = '''
defaults:
  - launcher: pool
  - _self_
sleep: 1.0
kill: false
oom: false
device: auto
hydra:
  searchpath: [pkg://tipi.conf]
  sweep:
    dir: sweep
    subdir: ${hydra.job.num}
'''


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A Hydra app whose multirun jobs record their slot, in ``tmp_path/app``."""
    root = tmp_path / "app"
    (root / "conf").mkdir(parents=True)
    (root / "app.py").write_text(APP)
    (root / "conf" / "app.yaml").write_text(CONF)
    return root


def start_app(app: Path, cwd: Path, *overrides: str, gpus: str = "4",
              slots: Path | None = None) -> subprocess.Popen[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    env = tipi_env(TIPI_FAKE_GPUS=gpus, TIPI_SLOTS_DIR=str(slots or cwd / "slots"))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return subprocess.Popen(
        [sys.executable, str(app / "app.py"), "-m", *overrides], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def jobs(cwd: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((cwd / "sweep").glob("*/job.json"))]


def most_at_once(records: list[dict[str, Any]], key: Any = lambda r: "all") -> int:
    """The largest number of jobs of one ``key`` that ran at the same instant."""
    events = sorted([(r["start"], 1, key(r)) for r in records] + [(r["end"], -1, key(r)) for r in records])
    now: dict[Any, int] = {}
    most = 0
    for _, step, k in events:
        now[k] = now.get(k, 0) + step
        most = max(most, now[k])
    return most


def test_eight_jobs_over_four_gpus_never_share_one(app: Path, tmp_path: Path) -> None:
    out = finish(start_app(app, tmp_path / "run", "+seed=1,2,3,4,5,6,7,8", "sleep=0.5"))
    records = jobs(tmp_path / "run")
    assert sorted(r["num"] for r in records) == list(range(8)), out  # every job ran, once
    assert all(r["cvd"] in {"0", "1", "2", "3"} and r["slot"]["devices"] == [r["cvd"]] for r in records)
    assert most_at_once(records, key=lambda r: r["cvd"]) == 1  # never two jobs on one GPU
    assert len({r["cvd"] for r in records}) > 1  # spread over the GPUs


def test_per_device_two_runs_two_jobs_on_a_gpu(app: Path, tmp_path: Path) -> None:
    out = finish(start_app(app, tmp_path / "run", "+seed=1,2,3", "sleep=2", "launcher.per_device=2", gpus="1"))
    records = jobs(tmp_path / "run")
    assert len(records) == 3, out
    assert most_at_once(records, key=lambda r: r["cvd"]) == 2  # two at once on GPU 0, never three


def test_two_sweeps_started_together_share_the_gpus_without_collision(app: Path, tmp_path: Path) -> None:
    slots = tmp_path / "machine-slots"
    procs = [start_app(app, tmp_path / name, "+seed=1,2,3", "sleep=1", gpus="2", slots=slots) for name in "ab"]
    outs = [finish(p) for p in procs]
    records = jobs(tmp_path / "a") + jobs(tmp_path / "b")
    assert len(records) == 6, outs
    assert most_at_once(records, key=lambda r: r["cvd"]) == 1
    for first, second in combinations(records, 2):
        if first["cvd"] == second["cvd"]:
            assert first["end"] <= second["start"] or second["end"] <= first["start"]


def test_a_killed_job_frees_its_slot_and_the_rest_finish(app: Path, tmp_path: Path) -> None:
    proc = start_app(app, tmp_path / "run", "+seed=1,2", "kill=true,false", "sleep=0.5", gpus="1")
    out = finish(proc)
    records = jobs(tmp_path / "run")
    assert len(records) == 4, out  # the killed jobs wrote their start; every other job ran on the freed GPU
    assert sum("end" in r for r in records) == 2
    assert proc.returncode != 0 and "JobLost" in out  # the killed jobs are failed rows, not a hung sweep


# --- the CPU pool, with tipi itself -------------------------------------------------------------------------

TINY = ("debug=fast", "model=unet_small", "progress=none", "device=cpu", "data.limit_train=16", "data.limit_val=8",
        "data.limit_test=8", "data.image_size=16", "processes.result.num_samples=1",
        "processes.train.num_figure_samples=1")


def test_a_detached_cpu_pool_splits_the_cores_between_its_jobs(run_tipi: RunTipi, tmp_path: Path) -> None:
    env = tipi_env(TIPI_SLOTS_DIR=str(tmp_path / "slots"))
    proc = run_tipi("-m", *TINY, "seed=1,2,3", "data.num_workers=4", "launcher=pool", "launcher.workers=2",
                    "launcher.wait=false", env=env)
    assert proc.returncode == 0 and "not waiting for them (launcher.wait=false)" in proc.stdout, proc.stderr
    [sweep] = list((tmp_path / "multirun").glob("*/*"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = subprocess.run([sys.executable, "-m", "tipi.runs", "multirun", "status", str(sweep)], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=60)
        if "3 succeeded" in status.stdout:
            break
        time.sleep(2)
    assert "3 succeeded" in status.stdout, status.stdout + status.stderr
    cores = len(os.sched_getaffinity(0))
    records = [read_json(sweep / str(num) / "run.json") for num in range(3)]
    for record in records:
        assert record["slot"]["kind"] == "cpu" and record["slot"]["threads"] == max(1, cores // 2)
    assert {r["slot"]["slots"][0] for r in records} == {"cpu.0", "cpu.1"}  # two slots, three jobs


class OomUnlessAlone(nn.Module):
    """A small segmentation net that runs out of (fake) GPU memory unless its job has a GPU to itself."""

    def __init__(self, in_channels: int = 3, num_classes: int = 4, base_channels: int = 8, depth: int = 2) -> None:
        super().__init__()
        del depth
        self.body = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slot = json.loads(os.environ.get("TIPI_SLOT", "null"))
        if slot and len(slot["slots"]) == 1 and x.device.type != "meta":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.body(x)


def test_a_job_out_of_memory_beside_others_is_retried_alone(run_tipi: RunTipi, tmp_path: Path) -> None:
    env = tipi_env(TIPI_SLOTS_DIR=str(tmp_path / "slots"), TIPI_FAKE_GPUS="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = run_tipi("-m", *TINY[:3], *TINY[4:], "device=auto", f"model._target_={__name__}.OomUnlessAlone", "seed=1",
                    "launcher=pool", "launcher.per_device=2", env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "ran out of GPU memory; retrying each once, alone on a GPU" in out
    [sweep] = list((tmp_path / "multirun").glob("*/*"))
    for num in (0,):
        record = read_json(sweep / str(num) / "run.json")
        assert record["status"] == "succeeded" and len(record["attempts"]) == 2
        assert "OutOfMemoryError" in record["attempts"][0]["reason"] and len(record["slot"]["slots"]) == 8
        assert record["retried_alone"]
    assert "retried alone" in out  # the summary says so


def test_ctrl_c_stops_every_job_at_a_step_boundary_resumable(tmp_path: Path) -> None:
    env = tipi_env(TIPI_SLOTS_DIR=str(tmp_path / "slots"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tipi", "-m", *TINY, "seed=1,2", "processes.train.epochs=400", "launcher=pool",
         "launcher.workers=2"],
        cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        ckpts = list(tmp_path.glob("multirun/*/*/*/checkpoints/last.pt"))
        if len(ckpts) == 2:
            break
        time.sleep(0.2)
    assert len(ckpts) == 2, "both jobs should be training"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=90)
    assert "stopping 2 job(s) at their next step boundary" in out
    for run_dir in tmp_path.glob("multirun/*/*/[01]"):
        record = read_json(run_dir / "run.json")
        assert record["status"] == "interrupted", out
        assert (run_dir / "checkpoints" / "last.pt").exists()
