"""Device selection, with fakes at the torch boundary (this machine has no GPU)."""

from __future__ import annotations

import pytest
import torch

from tipi import DeviceError, PipelineController
from tipi.permanences import device as device_mod
from tipi.permanences.device import Device, available_devices, resolve_device


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch):
    """Pretend to have CUDA devices with the given free memory (bytes), as the driver reports it."""

    def install(free: list[int]) -> list[int]:
        emptied: list[int] = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(free))
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=0: (free[i], 80 * 2**30))
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
        return emptied

    return install


def test_cpu_only_machine_resolves_auto_to_cpu() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto") == torch.device("cpu")
    assert "cpu" in available_devices()


def test_auto_picks_the_gpu_with_most_free_memory(fake_gpus) -> None:
    fake_gpus([2 * 2**30, 9 * 2**30, 5 * 2**30])
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:2") == torch.device("cuda", 2)


def test_a_missing_gpu_lists_the_devices_that_exist(fake_gpus) -> None:
    fake_gpus([2**30, 2**30])
    with pytest.raises(DeviceError) as info:
        resolve_device("cuda:7")
    assert info.value.key == "device"
    assert "cuda:7" in str(info.value) and "cpu, cuda:0, cuda:1" in str(info.value)


def test_a_misspelt_device_is_refused_without_torch() -> None:
    with pytest.raises(DeviceError, match="'tpu' is not a device. Valid: auto, cpu, cuda, cuda:N, mps"):
        Device("tpu")


def test_validate_checks_free_memory_and_cleanup_releases_the_cache(fake_gpus) -> None:
    emptied = fake_gpus([int(0.5 * 2**30)])
    dev = Device("cuda:0", min_free_memory_gb=1.0)
    PipelineController({"device": dev}, [])
    dev.initialize()
    with pytest.raises(DeviceError) as info:
        dev.validate()
    assert info.value.key == "permanences.device.min_free_memory_gb"
    assert "0.50 GiB free" in str(info.value)
    dev.cleanup()
    assert emptied == [1]
    assert dev.device is None


def test_state_reports_the_chosen_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_mod, "available_devices", lambda: ["cpu"])
    dev = Device("cpu")
    dev.initialize()
    assert dev.get_state() == {"device": "cpu"}
