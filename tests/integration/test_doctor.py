"""``tipi-doctor`` end to end: ``python -m tipi.doctor`` in a subprocess on this machine.

This machine is a CPU box with the local SLURM cluster and no network; on a
GPU box the CUDA rows are ok instead of skipped and these tests say so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import tipi_env
from tests.integration.slurm_helpers import slurm_cluster  # noqa: F401 - a fixture, used by name

EVERY_ROW = {"versions", "torch", "torchvision", "cpu", "mps", "device=auto", "smoke cpu", "gloo", "nccl",
             "slurm", "wandb", "output"}


def doctor(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tipi.doctor ARGS`` in ``cwd`` (stdout is a pipe: plain text, or JSON with --json)."""
    return subprocess.run([sys.executable, "-m", "tipi.doctor", *args], cwd=cwd, env=env or tipi_env(),
                          capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """One whole doctor run (smoke steps included) asked for JSON and for CUDA, shared by the tests below."""
    return doctor("--json", "--require", "cuda", cwd=tmp_path_factory.mktemp("doctor"))


def rows(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    """The JSON report's rows by name."""
    return {row["name"]: row for row in json.loads(proc.stdout)["checks"]}


def has_gpu(by_name: dict[str, dict[str, Any]]) -> bool:
    """Whether the doctor found a CUDA device (then the CUDA rows are real, not skipped)."""
    return any(name.startswith("cuda:") for name in by_name)


def test_every_check_runs_and_the_json_holds_each(full_run: subprocess.CompletedProcess[str]) -> None:
    by_name = rows(full_run)
    assert set(by_name) >= EVERY_ROW, full_run.stdout
    for name in ("versions", "torch", "cpu", "device=auto", "smoke cpu", "gloo", "output"):
        if name == "cpu" and "(busy: other work on the cores)" in by_name[name]["detail"]:
            assert by_name[name]["status"] == "warning"  # the suite's own workers load the machine
            continue
        assert by_name[name]["status"] == "ok", by_name[name]
    smoke = by_name["smoke cpu"]["detail"]
    assert smoke.startswith("loss ") and smoke.endswith("checkpoint reloads on CPU"), smoke
    assert by_name["gloo"]["detail"] == "2-rank all-reduce correct (3)"
    assert all(set(row) == {"name", "status", "detail", "remedy", "groups", "seconds"} for row in by_name.values())
    if not has_gpu(by_name):
        for name in ("cuda", "smoke cuda"):
            assert (by_name[name]["status"], by_name[name]["detail"]) == ("skipped", "no CUDA device")
        assert by_name["nccl"]["status"] == "skipped" and "2+ CUDA devices" in by_name["nccl"]["detail"]
        assert "picks cpu" in by_name["device=auto"]["detail"]


def test_offline_wandb_is_reported_as_such_without_waiting(full_run: subprocess.CompletedProcess[str]) -> None:
    wandb = rows(full_run)["wandb"]
    assert wandb["status"] == "ok" and wandb["detail"].startswith("offline (WANDB_MODE=offline)")
    assert wandb["seconds"] < 20, "bounded by --net-timeout: never a hang"


def test_require_cuda_fails_here_with_the_remedy(full_run: subprocess.CompletedProcess[str]) -> None:
    report = json.loads(full_run.stdout)
    if has_gpu(rows(full_run)):
        assert full_run.returncode == 0 and report["ok"], full_run.stderr
        return
    assert full_run.returncode == 1
    assert report["ok"] is False and report["unmet"] == {"cuda": ["cuda", "smoke cuda"]}
    assert "--require cuda is not met" in full_run.stderr
    assert "cuda: skipped: no CUDA device" in full_run.stderr
    assert "remedy: this torch is a CPU build: install a CUDA build" in full_run.stderr


def test_the_table_without_smoke_steps_imports_no_torch(tmp_path: Path) -> None:
    code = ("import sys; import tipi.doctor; assert 'torch' not in sys.modules, 'import tipi.doctor'; "
            "from tipi.doctor.__main__ import main; rc = main(['--no-smoke']); "
            "print('TORCH-IMPORTED', 'torch' in sys.modules, 'wandb' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=tipi_env(), capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH-IMPORTED False False" in proc.stdout
    plain = proc.stdout.splitlines()
    assert any(line.split()[:2] == ["ok", "versions"] for line in plain), proc.stdout
    assert any(line.split()[:2] == ["skipped", "gloo"] and "--no-smoke" in line for line in plain)
    busy = any(line.split()[:2] == ["warning", "cpu"] and "busy" in line for line in plain)
    assert any(line.split()[1:3] == ["ok,", "1" if busy else "0"] for line in plain), "the summary line"


@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_require_slurm_passes_with_the_local_cluster_up(tmp_path: Path) -> None:
    proc = doctor("--no-smoke", "--require", "slurm", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    slurm = [line for line in proc.stdout.splitlines() if line.split()[1:2] == ["slurm"]]
    assert slurm and slurm[0].startswith("ok") and "debug*" in slurm[0]


def test_a_misspelt_requirement_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    proc = doctor("--require", "cdua", cwd=tmp_path)
    assert proc.returncode == 2
    assert "'cdua' is not a check. Did you mean 'cuda'?" in proc.stderr


def test_without_a_key_or_mode_wandb_says_offline_and_how_to_log_online(tmp_path: Path) -> None:
    env = tipi_env(HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"))
    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        env.pop(name, None)
    proc = doctor("--json", "--no-smoke", "--require", "wandb", "--net-timeout", "2", cwd=tmp_path, env=env)
    wandb = rows(proc)["wandb"]
    assert proc.returncode == 1, "a run would log offline: --require wandb is not met"
    assert wandb["status"] == "warning"
    assert wandb["detail"] == ("no API key configured (WANDB_MODE unset): runs log offline to <run dir>/wandb; "
                               "`wandb sync` them later")
    assert "wandb login" in wandb["remedy"]
    assert "--require wandb is not met" in proc.stderr


def test_a_key_without_a_server_is_a_warning_and_the_key_is_never_shown(tmp_path: Path) -> None:
    key = "f" * 40
    env = tipi_env(HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"), WANDB_API_KEY=key,
                   WANDB_BASE_URL="http://127.0.0.1:9")  # the discard port: nothing listens, refused at once
    env.pop("WANDB_MODE", None)
    proc = doctor("--json", "--no-smoke", "--net-timeout", "2", cwd=tmp_path, env=env)
    wandb = rows(proc)["wandb"]
    assert proc.returncode == 0, proc.stderr
    assert wandb["status"] == "warning"
    assert "API key configured (WANDB_MODE unset) but 127.0.0.1:9 unreachable" in wandb["detail"]
    assert "WANDB_MODE=offline" in wandb["remedy"]
    assert key not in proc.stdout + proc.stderr
