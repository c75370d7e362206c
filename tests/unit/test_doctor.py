"""The doctor's checks in-process: faked GPUs, faked SLURM commands, a torchvision that cannot load, hangs."""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tipi.doctor import CheckResult, Options, Status, unmet
from tipi.doctor.checks_devices import device_results
from tipi.doctor.checks_env import check_torchvision
from tipi.doctor.checks_slurm import check_slurm
from tipi.doctor.checks_wandb import reachable
from tipi.doctor.context import DoctorContext
from tipi.doctor.result import failed, ok, skipped, warning

GIB = 2**30


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch):
    """Pretend to have CUDA devices with the given free memory (bytes) of 80 GiB each, as the driver reports it."""
    import torch

    def install(free: list[int]) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(free))
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=0: (free[i], 80 * GIB))
        monkeypatch.setattr(torch.cuda, "get_device_properties",
                            lambda i: SimpleNamespace(name="NVIDIA H100 80GB HBM3", major=9, minor=0))

    return install


def by_name(rows: list[CheckResult]) -> dict[str, CheckResult]:
    """Rows by their name."""
    return {row.name: row for row in rows}


def test_devices_report_free_memory_and_the_auto_choice_as_on_a_gpu_box(fake_gpus) -> None:
    from tipi.doctor.worker import devices_info

    fake_gpus([20 * GIB, 41 * GIB, 5 * 2**20])
    rows = by_name(device_results(devices_info()))
    assert rows["cuda:0"].status == Status.OK
    assert rows["cuda:0"].detail == "NVIDIA H100 80GB HBM3, 20.0 of 80.0 GiB free, compute capability 9.0"
    assert rows["cuda:1"].detail.startswith("NVIDIA H100 80GB HBM3, 41.0 of 80.0 GiB free")
    assert rows["cuda:2"].status == Status.WARNING and "mostly in use" in rows["cuda:2"].remedy
    assert rows["device=auto"].detail == ("device=auto picks cuda:1: most free memory of 3 CUDA device(s) "
                                          "(41.0 GiB free)")
    assert "cuda" not in rows, "no 'no CUDA device' row on a box with GPUs"


def test_without_cuda_the_cuda_row_is_skipped_with_a_remedy(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from tipi.doctor.worker import devices_info

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rows = by_name(device_results({**devices_info(), "cuda_version": None}))
    assert (rows["cuda"].status, rows["cuda"].detail) == (Status.SKIPPED, "no CUDA device")
    assert "CPU build" in rows["cuda"].remedy
    assert rows["device=auto"].detail.startswith("device=auto picks cpu: no CUDA device")


def test_a_requirement_needs_an_ok_row_and_no_failed_one() -> None:
    rows = [ok("cuda:0", "GPU", "cuda"), skipped("smoke cuda", "--no-smoke", ("smoke", "cuda")),
            warning("wandb", "offline", "wandb login", "wandb"), skipped("nccl", "needs 2 GPUs", "nccl"),
            ok("slurm", "up", "slurm"), failed("slurm accounting", "no sacct", "enable it", "slurm")]
    missing = unmet(rows, ["cuda", "wandb", "nccl", "slurm", "output"])
    assert list(missing) == ["wandb", "nccl", "slurm", "output"]
    assert [r.name for r in missing["slurm"]] == ["slurm accounting"]
    assert missing["output"][0].detail == "no check reported on it"


def test_a_server_that_never_answers_is_given_up_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hang(*args: object, **kwargs: object) -> socket.socket:
        release.wait(30)  # a name lookup that never returns, as on a machine without network
        raise OSError("released by the test")

    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.monotonic()
    try:
        why = reachable("api.wandb.ai", 443, timeout=0.5)
    finally:
        release.set()
    assert why == "no answer within 0.5 s"
    assert time.monotonic() - start < 10


def fake_commands(folder: Path, **scripts: str) -> Path:
    """Executables named after the keywords, each running its shell snippet."""
    folder.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = folder / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return folder


def test_slurm_lists_partitions_with_their_gpus_and_checks_sbatch_partition(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    sinfo = r"printf 'gpu*|up|2|gpu:a100:4(S:0-1)\ngpu*|up|1|gpu:h100:8\ncpu|up|4|(null)\n'"
    bin_dir = fake_commands(tmp_path / "bin", sinfo=sinfo, sbatch="exit 0", sacct="echo 17")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("SBATCH_PARTITION", raising=False)
    ctx = DoctorContext(Options(timeout=30))
    rows = by_name(check_slurm(ctx))
    assert rows["slurm"].status == Status.OK
    assert rows["slurm"].detail.startswith(
        "gpu* (up, 3 node(s), gpu:a100:4, gpu:h100:8); cpu (up, 4 node(s), no GPUs)")
    assert rows["slurm accounting"].detail == "sacct answers (1 job(s) in the last 10 minutes)"
    monkeypatch.setenv("SBATCH_PARTITION", "gpus")
    [row, _] = check_slurm(ctx)
    assert row.status == Status.FAILED
    assert "SBATCH_PARTITION=gpus is not a partition here" in row.detail and "Did you mean 'gpu'?" in row.detail


def test_slurm_that_hangs_or_lacks_accounting_fails_in_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = fake_commands(tmp_path / "bin", sinfo=f"exec {shutil.which('sleep')} 60", sbatch="exit 0",
                            sacct="echo 'Slurm accounting storage is disabled' >&2; exit 1")
    monkeypatch.setenv("PATH", str(bin_dir))
    start = time.monotonic()
    rows = by_name(check_slurm(DoctorContext(Options(timeout=1))))
    assert time.monotonic() - start < 30
    assert rows["slurm"].detail == "sinfo does not answer: no answer within the timeout (killed)"
    assert rows["slurm accounting"].detail == (
        "sacct does not answer: exited 1: Slurm accounting storage is disabled")
    assert "sacct" in rows["slurm accounting"].remedy


def test_no_slurm_is_skipped_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(fake_commands(tmp_path / "empty")))
    [row] = check_slurm(DoctorContext(Options()))
    assert (row.status, row.detail) == (Status.SKIPPED, "no SLURM here (sinfo, sbatch, sacct not on PATH)")


def test_a_torchvision_that_cannot_load_beside_torch_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What a CUDA torchvision wheel next to a CPU torch does on import.
    site = tmp_path / "site"
    (site / "torchvision").mkdir(parents=True)
    (site / "torchvision" / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n")
    (site / "torchvision-0.99.0.dist-info").mkdir()
    (site / "torchvision-0.99.0.dist-info" / "METADATA").write_text("Name: torchvision\nVersion: 0.99.0\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    [row] = check_torchvision(DoctorContext(Options(timeout=120)))
    assert row.status == Status.FAILED
    assert row.detail.startswith("torchvision 0.99.0 cannot load beside torch ")
    assert row.detail.endswith("RuntimeError: operator torchvision::nms does not exist")
    assert "torchvision built for this torch" in row.remedy
