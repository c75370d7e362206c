"""Which rank a process is, read from the environment a SLURM job leaves (no torch, no cluster needed)."""

from __future__ import annotations

import pytest

from tipi.distributed.env import detect


def _slurm_task(monkeypatch: pytest.MonkeyPatch, job: str, rank: int) -> None:
    for var in ("RANK", "WORLD_SIZE", "MASTER_PORT", "SUBMITIT_EXECUTOR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", job)
    monkeypatch.setenv("SLURM_PROCID", str(rank))
    monkeypatch.setenv("SLURM_LOCALID", str(rank))
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_NNODES", "1")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "node[07-08]")


def test_the_tasks_of_a_slurm_job_agree_on_a_port_outside_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = set()
    for job in ("335", "336", "4242_7", "99999999"):
        found = []
        for rank in (0, 1):
            _slurm_task(monkeypatch, job, rank)
            env = detect()
            assert (env.rank, env.world_size, env.master_addr, env.source) == (rank, 2, "node07", "slurm")
            found.append(env.master_port)
        assert found[0] == found[1], job  # both ranks derive it alone, from the job id
        # below Linux's ephemeral ports (32768-60999), where an outgoing connection may hold a port
        assert 15000 <= found[0] < 30000, found
        ports.add(found[0])
    assert len(ports) == 4  # jobs side by side on one node get their own ports


def test_master_port_set_by_the_user_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    _slurm_task(monkeypatch, "335", 1)
    monkeypatch.setenv("MASTER_PORT", "41234")
    assert detect().master_port == 41234
