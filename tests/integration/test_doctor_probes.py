"""The doctor's checks that run a program: SLURM's commands (fakes on PATH) and torchvision in a worker."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.unit.test_doctor import by_name
from tipi.doctor import Options, Status
from tipi.doctor.checks_env import check_torchvision
from tipi.doctor.checks_slurm import check_slurm
from tipi.doctor.context import DoctorContext


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
    assert rows["slurm"].detail == "installed, no controller answers (sinfo: no answer within 1 s)"
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


def test_slurm_installed_without_a_controller_is_said_so_within_its_bound(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    down = "echo 'slurm_load_partitions: Unable to contact slurm controller (connect failure)' >&2; exit 1"
    bin_dir = fake_commands(tmp_path / "bin", sinfo=down, sbatch="exit 0", sacct=f"exec {shutil.which('sleep')} 60")
    monkeypatch.setenv("PATH", str(bin_dir))
    start = time.monotonic()
    rows = by_name(check_slurm(DoctorContext(Options(timeout=120))))  # the doctor's own timeout is long
    assert time.monotonic() - start < 10, "each SLURM call is bounded (2 s), and they run at once"
    assert rows["slurm"].detail == ("installed, no controller answers (sinfo: exited 1: slurm_load_partitions: "
                                    "Unable to contact slurm controller (connect failure))")
    assert rows["slurm accounting"].detail == "installed, no controller answers (sacct: no answer within 2 s)"
