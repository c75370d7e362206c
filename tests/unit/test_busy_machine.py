"""A busy machine is named at start (load average above the usable cores) and by the doctor; no thread count changes."""

from __future__ import annotations

import logging
import os

import pytest

from tipi.doctor.checks_devices import _cpu_row
from tipi.doctor.result import Status
from tipi.permanences import device
from tipi.permanences.device import Device, busy_machine_note


@pytest.fixture
def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "usable_cores", lambda: 2)


def test_a_load_above_the_usable_cores_is_named_with_the_setting_that_helps(
        two_cores: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (3.7, 2.0, 1.0))
    note = busy_machine_note(2)
    assert note == ("this machine is busy: load average 3.7 over the last minute on 2 usable core(s), and torch "
                    "runs 2 thread(s) here; with other work on the cores, fewer threads often train faster "
                    "(OMP_NUM_THREADS=1 python -m tipi ...)")
    monkeypatch.setattr(os, "getloadavg", lambda: (1.9, 2.0, 1.0))
    assert busy_machine_note(2) is None


def test_a_cpu_run_warns_once_at_start_and_keeps_its_threads(two_cores: None, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    import torch

    monkeypatch.setattr(os, "getloadavg", lambda: (5.0, 5.0, 5.0))
    threads = torch.get_num_threads()
    with caplog.at_level(logging.WARNING, logger="tipi.permanences.device"):
        dev = Device("cpu")
        dev.initialize()
        dev.cleanup()
    assert [r.getMessage() for r in caplog.records if "this machine is busy" in r.getMessage()], caplog.text
    assert torch.get_num_threads() == threads, "no thread count changed silently"


def test_the_doctor_reports_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (4.2, 3.0, 2.0))
    row = _cpu_row({"threads": 2, "affinity": 2, "cpu_count": 2})
    assert row.status == Status.WARNING and "load average 4.2 (busy: other work on the cores)" in row.detail
    assert "OMP_NUM_THREADS=1" in row.remedy
    monkeypatch.setattr(os, "getloadavg", lambda: (0.3, 0.3, 0.3))
    row = _cpu_row({"threads": 2, "affinity": 2, "cpu_count": 2})
    assert row.status == Status.OK and row.detail.endswith("load average 0.3")
