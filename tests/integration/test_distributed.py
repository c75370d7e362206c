"""One run on several ranks (``distributed=ddp``): real CLI, real torch launcher, gloo on CPU, 2 ranks.

Every rank runs one thread (``OMP_NUM_THREADS=1``) and tiny data. The model in
most tests is :class:`TinySeg` below: no BatchNorm, so 2 ranks with per-rank
batch b compute exactly the gradients of 1 process with batch 2b (BatchNorm
would normalize each rank's half-batch by itself; SyncBatchNorm is CUDA-only).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.conftest import RunTipi, read_json, read_jsonl, run_dirs, tipi_env
from tests.integration.slurm_helpers import slurm_cluster  # noqa: F401 - a fixture
from tipi.distributed.env import first_host
from tipi.distributed.settings import Settings

# Weights after N steps: the same sums in another order (DDP averages two half-batch gradients), so float32
# rounding differs by a few ulps a step; Adam's normalisation keeps it from growing. Stated tolerance:
ATOL, RTOL = 1e-5, 1e-4
TINY = "tests.integration.test_distributed.TinySeg"
BASE = ("debug=fast", "progress=none", "device=cpu", "data.image_size=16", f"model._target_={TINY}",
        "~processes.result", "processes.train.figures_every_n_epochs=0")
DDP = ("distributed=ddp", "distributed.nproc_per_node=2", "distributed.timeout_s=30")


class TinySeg(nn.Module):
    """A two-layer segmentation net without BatchNorm; ``delay_s`` slows each training call, ``fail_*`` breaks one.

    Takes the ``model=unet_small`` keys so that only ``_target_`` needs overriding.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 4, base_channels: int = 8, depth: int = 2,
                 delay_s: float = 0.0, fail_rank: int = -1, fail_at_call: int = 0) -> None:
        super().__init__()
        del depth
        self.body = nn.Sequential(nn.Conv2d(in_channels, base_channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(base_channels, num_classes, 1))
        self.delay_s, self.fail_rank, self.fail_at_call = delay_s, fail_rank, fail_at_call
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits; in training, sleeps ``delay_s`` and raises on rank ``fail_rank`` at call ``fail_at_call``."""
        if self.training:
            self.calls += 1
            time.sleep(self.delay_s)
            if self.calls == self.fail_at_call and int(os.environ.get("RANK", "0")) == self.fail_rank:
                raise ValueError(f"boom on rank {self.fail_rank} at call {self.calls}")
        return self.body(x)


def _env() -> dict[str, str]:
    return tipi_env(OMP_NUM_THREADS="1")


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=ATOL, rtol=RTOL), (key, (wa[key] - wb[key]).abs().max())


def _one_run_dir(root: Path) -> Path:
    [run_dir] = run_dirs(root)
    assert [p for p in root.rglob("*") if p.is_dir() and (p / ".hydra").is_dir()] == [run_dir]
    return run_dir


def _assert_ddp_run_dir(run_dir: Path, started_by: str) -> dict[str, Any]:
    record = read_json(run_dir / "run.json")
    assert record["status"] == "succeeded", record
    assert record["distributed"]["world_size"] == 2
    assert record["distributed"]["backend"] == "gloo"
    assert record["distributed"]["started_by"] == started_by
    assert [r["rank"] for r in record["distributed"]["ranks"]] == [0, 1]
    assert all(r["device"] == "cpu" and r["host"] for r in record["distributed"]["ranks"])
    assert len(record["attempts"]) == 1
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "checkpoints" / "best.pt").is_file()
    assert (run_dir / "rank0.log").is_file() and "rank 1 of 2" in (run_dir / "rank1.log").read_text()
    steps = [row["step"] for row in read_jsonl(run_dir / "metrics.jsonl") if "train/loss" in row]
    assert steps == sorted(set(steps)), "metrics come from rank 0 alone: no step twice"
    return record


def test_tipi_starts_the_ranks_and_leaves_one_run_directory(run_tipi: RunTipi, tmp_path: Path) -> None:
    proc = run_tipi(*BASE, *DDP, env=_env(), check=True)
    run_dir = _one_run_dir(tmp_path / "outputs")
    _assert_ddp_run_dir(run_dir, "tipi")
    assert (run_dir / ".hydra" / "resolved.yaml").is_file()
    assert proc.stderr.count("data: train=64") == 1, "rank 1 is silent on the terminal"


def test_torchrun_start_leaves_one_run_directory(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "tipi", *BASE, "distributed=ddp"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=240,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    run_dir = _one_run_dir(tmp_path / "outputs")
    _assert_ddp_run_dir(run_dir, "torchrun")


def test_two_ranks_of_batch_b_train_as_one_process_of_batch_2b(run_tipi: RunTipi, tmp_path: Path) -> None:
    # 17 validation and 13 test images: the ranks' shares are uneven and nothing is padded
    common = (*BASE, "data.limit_val=17", "data.limit_test=13", "data.eval_batch_size=4")
    run_tipi(*common, "data.batch_size=16", "hydra.run.dir=one", env=_env(), check=True)
    proc = run_tipi(*common, *DDP, "data.batch_size=8", "hydra.run.dir=two", env=_env())
    two = tmp_path / "two"
    assert proc.returncode == 0, proc.stderr  # no retry: a worker skips the interpreter's teardown (exit_worker)
    one = tmp_path / "one"
    assert read_json(one / "run.json")["metrics"]["train/loss"] == pytest.approx(
        read_json(two / "run.json")["metrics"]["train/loss"], rel=1e-4)
    _assert_same_weights(one, two)
    for split in ("val", "test"):  # the reduced evaluation equals the one-process evaluation
        single, ranks = read_json(one / f"{split}_metrics.json"), read_json(two / f"{split}_metrics.json")
        assert single.keys() == ranks.keys()
        for key, value in single.items():
            assert ranks[key] == pytest.approx(value, rel=1e-4, abs=1e-6, nan_ok=True), (split, key)


def _wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    metrics = run_dir / "metrics.jsonl"
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if metrics.exists() and any(r.get("step", 0) >= step for r in read_jsonl(metrics)):
            return
        time.sleep(0.1)
    raise AssertionError(f"no step {step} in {timeout}s")


SLOW = (*BASE, *DDP, "data.limit_train=512", "data.batch_size=8", "+model.delay_s=0.03",
        "processes.train.log_every_n_steps=1", "processes.train.checkpoint_every_n_steps=1000")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-rank run of 32 steps that nothing interrupts."""
    work = tmp_path_factory.mktemp("whole")
    proc = subprocess.run([sys.executable, "-m", "tipi", *SLOW, "hydra.run.dir=whole"], cwd=work, env=_env(),
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return work / "whole"


@pytest.mark.parametrize("target", ["all ranks", "rank 1"])
def test_sigterm_stops_every_rank_at_one_step_and_resume_equals_uninterrupted(
        run_tipi: RunTipi, tmp_path: Path, uninterrupted: Path, target: str) -> None:
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "tipi", *SLOW, f"hydra.run.dir={cut}"], cwd=tmp_path,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    try:
        _wait_for_step(cut, 3, proc)
        if target == "all ranks":  # what the starter forwards to every rank (scancel, a shell's kill)
            proc.send_signal(signal.SIGTERM)
        else:
            [rank1] = [r["pid"] for r in read_json(cut / "run.json")["distributed"]["ranks"] if r["rank"] == 1]
            os.kill(rank1, signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert read_json(cut / "run.json")["status"] == "interrupted"
    stopped = torch.load(cut / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert 3 <= stopped["step"] < 32 and not stopped["finished"], stopped
    assert not list(cut.glob("rank*.error.json"))
    for rank in (0, 1):  # both ranks stopped after the same step
        assert f"stopped after step {stopped['step']}" in (cut / f"rank{rank}.log").read_text()
    run_tipi(f"resume={cut}", env=_env(), check=True)
    assert read_json(cut / "run.json")["status"] == "succeeded"
    _assert_same_weights(uninterrupted, cut)


def test_a_rank_that_raises_fails_the_run_in_seconds_with_its_error(run_tipi: RunTipi, tmp_path: Path) -> None:
    start = time.monotonic()
    proc = run_tipi(*BASE, *DDP, "data.batch_size=8", "+model.fail_rank=1", "+model.fail_at_call=3",
                    "distributed.timeout_s=120", env=_env())
    elapsed, end = time.monotonic() - start, time.time()
    assert proc.returncode == 1, proc.stderr
    assert "rank 1: ValueError: boom on rank 1 at call 3" in proc.stderr
    assert "Traceback" not in proc.stderr
    [run_dir] = run_dirs(tmp_path / "outputs")
    record = read_json(run_dir / "run.json")
    assert record["status"] == "failed"
    assert record["error"] == "rank 1: ValueError: boom on rank 1 at call 3"
    assert elapsed < 120, f"took {elapsed:.0f}s"
    failed_at = read_json(run_dir / "rank1.error.json")["time"]
    assert end - failed_at < 60, "the others stop on the broken connection (~2 s), not after the 120 s timeout"


@pytest.mark.parametrize(("override", "key"), [("distributed.nproc_per_node=0", "distributed.nproc_per_node"),
                                               ("distributed.backend=nccl", "distributed.backend"),
                                               ("distributed.backend=glo", "distributed.backend")])
def test_bad_settings_are_one_message_before_any_worker(run_tipi: RunTipi, tmp_path: Path, override: str,
                                                        key: str) -> None:
    if "nccl" in override and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_tipi("debug=fast", "distributed=ddp", override, env=_env())
    assert proc.returncode == 1
    assert f"Error {key}:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("run.json")) and not list(tmp_path.rglob("rank*.log"))


def test_more_cpu_ranks_than_cores_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        Settings(nproc_per_node=len(os.sched_getaffinity(0)) + 1).warn_oversubscribed("cpu")
    assert "lower distributed.nproc_per_node" in caplog.text


def test_torchrun_without_distributed_settings_is_refused(tmp_path: Path) -> None:
    env = _env()
    env.update(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="1")
    proc = subprocess.run([sys.executable, "-m", "tipi", "debug=fast", "hydra.run.dir=x"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert "Error distributed:" in proc.stderr and "distributed=ddp" in proc.stderr


@pytest.mark.parametrize(("nodelist", "host"), [("node[03-05,9],gpu1", "node03"), ("gpu7", "gpu7"),
                                                 ("a1,b[1-2]", "a1"), ("x[007]-ib", "x007-ib")])
def test_the_first_host_of_a_slurm_node_list(nodelist: str, host: str) -> None:
    assert first_host(nodelist) == host


@pytest.mark.usefixtures("slurm_cluster")
def test_a_two_task_slurm_job_is_one_run(run_tipi: RunTipi, tmp_path: Path) -> None:
    run_tipi("-m", *BASE, "distributed=ddp", "launcher=slurm", "launcher.tasks_per_node=2",
             "hydra.launcher.mem_gb=1", "seed=1", env=_env(), timeout=600, check=True)
    run_dir = _one_run_dir(tmp_path / "multirun")
    _assert_ddp_run_dir(run_dir, "submitit")
    assert "rank 1 of 2" not in (run_dir / "tipi.log").read_text(), "rank 1 writes its own log only"
