"""The doctor's checks in-process: faked GPUs, faked SLURM commands, a torchvision that cannot load, hangs."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import pytest

from tipi.doctor import CheckResult, Status, unmet
from tipi.doctor.checks_devices import device_results
from tipi.doctor.checks_wandb import reachable
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
