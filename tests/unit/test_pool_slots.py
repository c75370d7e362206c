"""launcher=pool's plan and slot locks: bad input named by key, slots per GPU/core, atomic claims (no process)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tipi._hydra.launchers.slots import (
    MAX_PER_DEVICE,
    Gpu,
    auto_per_device,
    claim,
    enter_slot,
    plan_pool,
    visible_gpus,
)
from tipi.core.errors import ConfigError
from tipi.core.slot import SLOT_ENV, current_slot, slot_threads
from tipi.permanences.device import usable_cores


def config(tmp_path: Path, device: str = "auto", nproc: int | None = None, **launcher: object) -> object:
    cfg: dict[str, object] = {"device": device, "launcher": {"slots_dir": str(tmp_path / "slots"), **launcher}}
    if nproc is not None:
        cfg["distributed"] = {"nproc_per_node": nproc}
    return OmegaConf.create(cfg)


@pytest.fixture
def four_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIPI_FAKE_GPUS", "4")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_every_gpu_one_job_each_spread_before_doubling(four_gpus: None, tmp_path: Path) -> None:
    plan = plan_pool(config(tmp_path))
    assert plan.kind == "gpu" and plan.slots == ["gpu0.0", "gpu1.0", "gpu2.0", "gpu3.0"] and plan.capacity == 4
    doubled = plan_pool(config(tmp_path, per_device=2))
    assert doubled.capacity == 8 and doubled.slots[:4] == plan.slots and doubled.slots[4] == "gpu0.1"
    chosen = plan_pool(config(tmp_path, devices=[0, 2]))
    assert chosen.slots == ["gpu0.0", "gpu2.0"]
    assert plan.threads == max(1, usable_cores() // 4)


def test_cuda_visible_devices_limits_the_pool(four_gpus: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert [g.id for g in visible_gpus()] == ["1", "3"]
    assert plan_pool(config(tmp_path)).slots == ["gpu1.0", "gpu3.0"]


def test_a_gpu_that_is_not_there_is_named(four_gpus: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GPU 7 is not on this machine; it has GPU 0, 1, 2, 3") as info:
        plan_pool(config(tmp_path, devices=[7]))
    assert info.value.key == "launcher.devices"


@pytest.mark.parametrize("value", [0, -1, "two", True])
def test_per_device_must_be_a_count_or_auto(four_gpus: None, tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="jobs per GPU at once") as info:
        plan_pool(config(tmp_path, per_device=value))
    assert info.value.key == "launcher.per_device"


def test_workers_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        plan_pool(config(tmp_path, device="cpu", workers=0))
    assert info.value.key == "launcher.workers"


def test_gpus_asked_of_a_machine_without(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIPI_FAKE_GPUS", "0")
    with pytest.raises(ConfigError, match="asked for GPUs, and this machine has none") as info:
        plan_pool(config(tmp_path, device="cuda"))
    assert info.value.key == "device" and "device=cpu launcher.workers=N" in (info.value.hint or "")
    with pytest.raises(ConfigError) as info:
        plan_pool(config(tmp_path, devices=[0]))
    assert info.value.key == "launcher.devices"


def test_a_named_gpu_is_refused_with_the_key_that_chooses_one(four_gpus: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sees only its own GPU, as cuda:0") as info:
        plan_pool(config(tmp_path, device="cuda:2"))
    assert info.value.key == "device" and "launcher.devices=[2]" in (info.value.hint or "")


def test_cpu_pool_splits_the_cores(tmp_path: Path) -> None:
    plan = plan_pool(config(tmp_path, device="cpu", workers=2))
    assert plan.kind == "cpu" and plan.slots == ["cpu.0", "cpu.1"]
    assert plan.threads == max(1, usable_cores() // 2)
    many = plan_pool(config(tmp_path, device="cpu", workers=usable_cores() + 1))
    assert any("more than the" in note and "launcher.workers" in note for note in many.notes)


def test_a_ddp_job_takes_one_slot_per_process(four_gpus: None, tmp_path: Path) -> None:
    plan = plan_pool(config(tmp_path, nproc=2))
    assert plan.per_job == 2 and plan.capacity == 2
    with pytest.raises(ConfigError) as info:
        plan_pool(config(tmp_path, nproc=8))
    assert info.value.key == "distributed.nproc_per_node"


def test_auto_fits_jobs_by_their_recorded_peak(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIPI_FAKE_GPUS", "20,10")
    assert plan_pool(config(tmp_path, per_device="auto")).slots == ["gpu0.0", "gpu1.0"]  # peak unknown: one each
    planned = plan_pool(config(tmp_path, per_device="auto"), peak_bytes=4 * 2**30)
    assert planned.slots.count("gpu0.0") == 1 and sum(s.startswith("gpu0.") for s in planned.slots) == 4
    assert sum(s.startswith("gpu1.") for s in planned.slots) == 2
    assert auto_per_device(Gpu("0", 80 * 2**30, 80 * 2**30), 2**20) == MAX_PER_DEVICE


def test_a_slot_is_held_until_released_and_the_next_claim_waits(four_gpus: None, tmp_path: Path) -> None:
    plan = plan_pool(config(tmp_path, devices=[1]))
    first = claim(plan, note={"job": 0})
    assert first.slots == ["gpu1.0"]
    holder = json.loads((tmp_path / "slots" / "gpu1.0.lock").read_text())
    assert holder["pid"] == os.getpid() and holder["job"] == 0
    got: list[float] = []

    def wait_for_it() -> None:
        second = claim(plan)
        got.append(time.monotonic())
        second.release()

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    time.sleep(0.3)
    assert not got  # the slot is taken: the second claim waits
    released = time.monotonic()
    first.release()
    waiter.join(timeout=5)
    assert got and got[0] - released < 0.5


def test_an_exclusive_claim_takes_every_share_of_a_gpu(four_gpus: None, tmp_path: Path) -> None:
    plan = plan_pool(config(tmp_path, devices=[0], per_device=2))
    alone = claim(plan, exclusive=True)
    assert alone.slots == [f"gpu0.{k}" for k in range(MAX_PER_DEVICE)]
    alone.release()


def test_entering_a_slot_sets_the_gpu_threads_and_the_record(
    four_gpus: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "OMP_NUM_THREADS", "MKL_NUM_THREADS", SLOT_ENV):
        monkeypatch.setenv(var, "")  # recorded, so that what enter_slot sets is undone after the test
        monkeypatch.delenv(var)
    import torch

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    plan = plan_pool(config(tmp_path, devices=[2]))
    held = claim(plan)
    try:
        slot = enter_slot(plan, held)
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "2" and os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        assert os.environ["OMP_NUM_THREADS"] == str(plan.threads)
        assert current_slot() == slot and slot["devices"] == ["2"] and slot_threads() == plan.threads
    finally:
        held.release()


def test_a_resubmitted_pool_sweep_keeps_its_slots_settings(tmp_path: Path) -> None:
    from tipi.runs.multirun import resubmit_command

    manifest = {"launcher": {"timeout_min": 1440}, "command": {
        "launcher_choice": "pool", "hydra_overrides": [],
        "task_overrides": ["seed=1,2", "device=cpu", "launcher=pool", "launcher.workers=2", "launcher.per_device=2",
                           "launcher.wait=false"]}}
    args = resubmit_command(tmp_path, manifest, [tmp_path / "0"])
    assert "launcher=pool" in args and "launcher.workers=2" in args and "launcher.per_device=2" in args
    assert "device=cpu" in args and "seed=1,2" not in args
    assert args[-1] == "launcher.wait=false" and args.count("launcher.wait=false") == 1
