"""Who started this process, and as which rank: torchrun, SLURM (through submitit or ``srun``), or nobody.

Read from the environment the starter leaves behind, without importing torch,
so the entry point can ask cheaply. :func:`export` writes the answer back as
the variables torch's ``env://`` rendezvous reads (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): users never set them by hand.
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import asdict, dataclass
from typing import Any

# SLURM gives no rendezvous port; each job derives one from its id, so its ranks agree without talking.
# The range lies below Linux's ephemeral ports (32768-60999 by default), which outgoing connections
# take: submitit's own choice (20000-60000) once landed on a port a connection on the node held, rank 0
# failed with EADDRINUSE and rank 1 waited for a store that never came.
_PORT_BASE, _PORT_SPAN = 15000, 15000


def job_port(job_id: str) -> int:
    """The rendezvous port of SLURM job ``job_id``: ``MASTER_PORT`` when set, else one derived from the id."""
    return _int("MASTER_PORT", _PORT_BASE + zlib.crc32(job_id.encode()) % _PORT_SPAN)


@dataclass(frozen=True)
class DistEnv:
    """One process's place in a distributed run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    source: str = "none"  # torchrun | tipi | submitit | slurm | none

    @property
    def distributed(self) -> bool:
        """True when there is more than one rank."""
        return self.world_size > 1

    def as_dict(self) -> dict[str, Any]:
        """Plain fields, for run.json."""
        return asdict(self)


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``node[03-05,9],gpu1`` -> ``node03``."""
    depth, end = 0, len(nodelist)
    for i, ch in enumerate(nodelist):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            end = i
            break
    first = nodelist[:end].strip()
    match = re.match(r"^([^\[]*)\[([^\]]+)\](.*)$", first)
    if not match:
        return first
    prefix, ranges, suffix = match.groups()
    return prefix + ranges.split(",")[0].split("-")[0] + suffix


def _int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _from_torchrun() -> DistEnv | None:
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    source = os.environ.get("TIPI_DISTRIBUTED_START") or ("torchrun" if "TORCHELASTIC_RUN_ID" in os.environ else "env")
    return DistEnv(
        rank=_int("RANK", 0),
        local_rank=_int("LOCAL_RANK", 0),
        world_size=_int("WORLD_SIZE", 1),
        local_world_size=_int("LOCAL_WORLD_SIZE", 1),
        master_addr=os.environ.get("MASTER_ADDR", "127.0.0.1"),
        master_port=_int("MASTER_PORT", 29500),
        source=source,
    )


def _from_submitit() -> DistEnv | None:
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment

    try:
        env = TorchDistributedEnvironment()
        job_id = str(JobEnvironment().job_id)
    except RuntimeError:  # not inside a submitit job after all
        return None
    return DistEnv(
        rank=env.rank,
        local_rank=env.local_rank,
        world_size=env.world_size,
        local_world_size=env.local_world_size,
        master_addr=env.master_addr,
        master_port=job_port(job_id),  # not submitit's own choice: see _PORT_BASE
        source="submitit",
    )


def _from_slurm() -> DistEnv | None:
    if "SLURM_PROCID" not in os.environ or _int("SLURM_NTASKS", 1) <= 1:
        return None
    nodelist = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_JOB_NODELIST") or "127.0.0.1"
    job = os.environ.get("SLURM_JOB_ID", "0")
    world = _int("SLURM_NTASKS", 1)
    nodes = max(1, _int("SLURM_NNODES", 1))
    return DistEnv(
        rank=_int("SLURM_PROCID", 0),
        local_rank=_int("SLURM_LOCALID", 0),
        world_size=world,
        local_world_size=max(1, world // nodes),
        master_addr=first_host(nodelist),
        master_port=job_port(job),
        source="slurm",
    )


def detect() -> DistEnv:
    """This process's rank and world, from torchrun's, submitit's or SLURM's environment; rank 0 of 1 if none."""
    for probe in (_from_torchrun, _from_submitit, _from_slurm):
        env = probe()
        if env is not None:
            return env
    return DistEnv()


def export(env: DistEnv) -> None:
    """Set the ``env://`` variables torch reads (and :func:`detect` finds again) from ``env``."""
    os.environ.update(
        RANK=str(env.rank),
        LOCAL_RANK=str(env.local_rank),
        WORLD_SIZE=str(env.world_size),
        LOCAL_WORLD_SIZE=str(env.local_world_size),
        MASTER_ADDR=env.master_addr,
        MASTER_PORT=str(env.master_port),
    )
    os.environ.setdefault("TIPI_DISTRIBUTED_START", env.source)


def env_rank() -> int:
    """This process's rank as the environment says (0 when nothing started it as a rank)."""
    return _int("RANK", 0) if "WORLD_SIZE" in os.environ else 0
