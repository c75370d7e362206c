"""The slots of ``launcher=pool``: what a job may run on, and the machine-wide locks that hand them out.

A slot is one GPU (or one share of a GPU, ``launcher.per_device``), or one
share of the CPU cores. :func:`plan_pool` turns the launcher's keys and the
machine into a :class:`PoolPlan` (a list of slot names), refusing bad input
with the key named. Each job claims its slot itself, in its own process,
before its config is composed (:func:`claim`): one ``flock`` per slot on a
file in a directory every sweep on the machine shares (``launcher.slots_dir``,
``/tmp/tipi-slots`` by default). The kernel makes the claim atomic and drops
it when the process ends, however it ends (a SIGKILL, the OOM killer), so two
sweeps started at the same moment never share a slot and a dead job never
holds one (Hydra #3002). The job then sees only its GPU
(``CUDA_VISIBLE_DEVICES``; ``device=auto`` or ``cuda`` is that GPU) and keeps
its torch threads and data loader workers within its share of the cores.

GPUs are listed by ``nvidia-smi`` (no CUDA context in the launcher), in PCI
bus order, and the job is told to number them the same way
(``CUDA_DEVICE_ORDER=PCI_BUS_ID``). ``TIPI_FAKE_GPUS`` (a count, or the free
GiB of each GPU: ``16,16,8``) stands in for them in tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tipi.core.errors import ConfigError
from tipi.core.slot import SLOT_ENV
from tipi.permanences.device import usable_cores

log = logging.getLogger(__name__)

FAKE_GPUS_ENV = "TIPI_FAKE_GPUS"
SLOTS_DIR_ENV = "TIPI_SLOTS_DIR"
# jobs one GPU may hold at once, whatever per_device says; a job retried alone claims all of them
MAX_PER_DEVICE = 8
_POLL_S = 0.02  # how often a job waiting for a slot tries again (a few syscalls each time)
_GIB = 2**30


@dataclass(frozen=True)
class Gpu:
    """One GPU as the machine numbers it (``nvidia-smi``'s index), with its free and total memory in bytes."""

    id: str
    free: int
    total: int


def _fake_gpus(spec: str) -> list[Gpu]:
    spec = spec.strip()
    if spec.isdigit():
        return [Gpu(str(i), 80 * _GIB, 80 * _GIB) for i in range(int(spec))]
    sizes = [float(x) for x in spec.split(",") if x.strip()]
    return [Gpu(str(i), int(gb * _GIB), int(max(gb, 80) * _GIB)) for i, gb in enumerate(sizes)]


def visible_gpus() -> list[Gpu]:
    """The GPUs this process may use (``CUDA_VISIBLE_DEVICES`` respected when it lists indices); none without."""
    fake = os.environ.get(FAKE_GPUS_ENV)
    if fake is not None:
        gpus = _fake_gpus(fake)
    else:
        smi = shutil.which("nvidia-smi")
        if smi is None:
            return []
        try:
            out = subprocess.run(
                [smi, "--query-gpu=index,memory.free,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("nvidia-smi did not answer (%s): the pool sees no GPU", exc)
            return []
        rows = [[c.strip() for c in line.split(",")] for line in out.splitlines() if line.strip()]
        gpus = [Gpu(r[0], int(float(r[1])) * 2**20, int(float(r[2])) * 2**20) for r in rows if len(r) == 3]
    allowed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if allowed is not None and all(p.strip().isdigit() for p in allowed.split(",") if p.strip()):
        wanted = [p.strip() for p in allowed.split(",") if p.strip()]
        gpus = [g for g in gpus if g.id in wanted]
    return gpus


@dataclass
class PoolPlan:
    """What the jobs of one pool multirun may claim: the slot names, the slots a job takes, its share of the cores."""

    kind: str  # "gpu" or "cpu"
    slots: list[str]
    per_job: int  # slots one job takes at once (distributed=ddp: one per process)
    threads: int  # cores each job may keep busy
    slots_dir: str
    workers: int  # jobs running at once, at most
    notes: list[str] = field(default_factory=list)
    gpus: list[Gpu] = field(default_factory=list)  # as listed when the sweep started
    auto: bool = False  # per_device=auto: replanned once a job's peak memory is known

    @property
    def capacity(self) -> int:
        """Jobs that can run at once."""
        return max(1, min(self.workers, len(self.slots) // self.per_job))

    def devices(self) -> list[str]:
        """The GPUs the slots are on, in order (none on the CPU)."""
        return list(dict.fromkeys(device_of(s) for s in self.slots if s.startswith("gpu")))


def device_of(slot: str) -> str:
    """The GPU of slot ``gpu3.1`` (``3``); ``cpu`` for a CPU slot."""
    return slot[3:].split(".", 1)[0] if slot.startswith("gpu") else "cpu"


def _int_key(value: Any, key: str, at_least: int, valid: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < at_least:
        raise ConfigError(f"{value!r} is not valid; {valid}", key=key)
    return value


def _gpu_list(launcher: DictConfig, gpus: list[Gpu], device: str) -> list[Gpu]:
    wanted = OmegaConf.select(launcher, "devices", default=None)
    if wanted is None:
        if device.startswith("cuda:") and device != "cuda:0":
            raise ConfigError(
                f"each job of launcher=pool sees only its own GPU, as cuda:0, so '{device}' names none",
                key="device",
                hint=f"Use device=cuda (or auto) and choose GPUs with launcher.devices=[{device[5:]}].",
            )
        return gpus
    if not isinstance(wanted, (list, tuple)) and not OmegaConf.is_list(wanted):
        wanted = [wanted]
    by_id = {g.id: g for g in gpus}
    missing = [str(w) for w in wanted if str(w) not in by_id]
    if missing:
        raise ConfigError(
            f"GPU {', '.join(missing)} is not on this machine; it has GPU " + (", ".join(by_id) if by_id else "none"),
            key="launcher.devices",
            hint="Leave launcher.devices=null to use every GPU.",
        )
    return [by_id[str(w)] for w in dict.fromkeys(wanted)]


def _per_device(launcher: DictConfig) -> int | str:
    value = OmegaConf.select(launcher, "per_device", default=1)
    if value == "auto":
        return "auto"
    return _int_key(
        value, "launcher.per_device", 1, f"jobs per GPU at once: a whole number from 1 to {MAX_PER_DEVICE}, or auto"
    )


def auto_per_device(gpu: Gpu, peak_bytes: int | None) -> int:
    """Jobs that fit at once on ``gpu``: its free memory (less a tenth) over a job's peak; 1 while it is unknown."""
    if not peak_bytes:
        return 1
    return max(1, min(MAX_PER_DEVICE, int(gpu.free * 0.9) // peak_bytes))


def plan_pool(config: DictConfig, peak_bytes: int | None = None, gpus: list[Gpu] | None = None) -> PoolPlan:
    """The pool's slots for this machine and config; a ``ConfigError`` naming the key for bad input.

    ``peak_bytes``: a job's peak GPU memory, once known (``per_device=auto``);
    ``gpus``: the GPUs as listed before the sweep started (listed now if None).
    """
    launcher = OmegaConf.select(config, "launcher") or OmegaConf.create({})
    device = str(OmegaConf.select(config, "device", default="auto") or "auto").lower()
    workers_value = OmegaConf.select(launcher, "workers", default=None)
    workers = (
        None
        if workers_value is None
        else _int_key(workers_value, "launcher.workers", 1, "jobs at once: 1 or more (null: one per slot)")
    )
    per_device = _per_device(launcher)
    per_job = int(OmegaConf.select(config, "distributed.nproc_per_node", default=1) or 1)
    slots_dir = str(
        OmegaConf.select(launcher, "slots_dir", default=None) or os.environ.get(SLOTS_DIR_ENV, "/tmp/tipi-slots")
    )
    cores = usable_cores()
    if device == "cpu":
        gpus = []
    elif gpus is None:
        gpus = visible_gpus()
    if not gpus and (device.startswith("cuda") or OmegaConf.select(launcher, "devices", default=None) is not None):
        key = "launcher.devices" if OmegaConf.select(launcher, "devices", default=None) is not None else "device"
        raise ConfigError(
            "launcher=pool was asked for GPUs, and this machine has none (nvidia-smi lists none)",
            key=key,
            hint="On the CPU: device=cpu launcher.workers=N splits the cores between N jobs.",
        )
    notes: list[str] = []
    if gpus:
        chosen = _gpu_list(launcher, gpus, device)
        counts = {g.id: (auto_per_device(g, peak_bytes) if per_device == "auto" else int(per_device)) for g in chosen}
        slots = [f"gpu{g.id}.{k}" for k in range(max(counts.values())) for g in chosen if k < counts[g.id]]
        kind = "gpu"
        workers = workers or len(slots)
    else:
        kind = "cpu"
        workers = workers or max(1, cores // 2)
        if workers > cores:
            notes.append(
                f"launcher.workers={workers} is more than the {cores} usable core(s): the jobs will share cores"
            )
        slots = [f"cpu.{k}" for k in range(workers)]
    if per_job > len(slots):
        raise ConfigError(
            f"a job takes {per_job} slots (one per process) and the pool has {len(slots)}",
            key="distributed.nproc_per_node",
            hint=f"Set distributed.nproc_per_node to at most {len(slots)}, or raise launcher.per_device.",
        )
    plan = PoolPlan(kind, slots, per_job, 1, slots_dir, workers, notes, gpus=gpus)
    plan.threads = max(1, cores // (plan.capacity * per_job))
    plan.auto = per_device == "auto"
    return plan


@dataclass
class Claim:
    """Slots a job holds (open, locked files): released when the job ends or its process dies."""

    slots: list[str]
    files: list[Any]
    waited_s: float
    handoff_s: float | None = None  # from the last holder's release to this claim, when this claim waited for it

    def release(self) -> None:
        """Let the next job have the slots (their files say when, for the next holder's handoff time)."""
        released = json.dumps({"released": time.time(), "pid": os.getpid()})
        for f in self.files:
            with contextlib.suppress(OSError, ValueError):
                f.seek(0)
                f.truncate()
                f.write(released)
                f.flush()
            with contextlib.suppress(OSError):
                fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
        self.files = []


def _slot_file(directory: Path, name: str) -> Any:
    fd = os.open(directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    return os.fdopen(fd, "r+")


def _try_lock(f: Any) -> bool:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _groups(plan: PoolPlan, exclusive: bool) -> list[list[str]]:
    """Each set of slots one job may take together."""
    if exclusive and plan.kind == "gpu":  # every slot a GPU can have: alone on it, whatever other sweeps ask
        return [[f"gpu{d}.{k}" for k in range(MAX_PER_DEVICE)] for d in plan.devices()]
    if plan.per_job == 1:
        return [[s] for s in plan.slots]
    return [list(c) for c in _combinations(plan.slots, plan.per_job)]


def _combinations(slots: list[str], n: int) -> list[tuple[str, ...]]:
    from itertools import combinations

    # distinct GPUs first: a DDP job wants one slot on each of n GPUs
    distinct = [c for c in combinations(slots, n) if len({device_of(s) for s in c}) == n]
    return distinct or list(combinations(slots, n))


def _take(directory: Path, group: list[str]) -> list[Any] | None:
    files: list[Any] = []
    for name in group:
        f = _slot_file(directory, name)
        if not _try_lock(f):
            f.close()
            for held in files:
                fcntl.flock(held, fcntl.LOCK_UN)
                held.close()
            return None
        files.append(f)
    return files


def _released(f: Any) -> float:
    """When the slot's last holder released it (0 if it never said: a first claim, a holder that died)."""
    try:
        f.seek(0)
        last = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        return 0.0
    return float(last.get("released") or 0.0) if isinstance(last, dict) else 0.0


def claim(plan: PoolPlan, *, exclusive: bool = False, note: dict[str, Any] | None = None) -> Claim:
    """Wait for a free slot (or set of slots) of ``plan``, lock it and return it; say who holds it in its file."""
    directory = Path(plan.slots_dir)
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # shared by every user's sweeps, like /tmp
        directory.chmod(0o1777)
    groups = _groups(plan, exclusive)
    t0 = time.monotonic()
    while True:
        for group in random.sample(groups, len(groups)) if len(groups) > 1 else groups:
            files = _take(directory, group)
            if files is not None:
                now = time.time()
                released = max((_released(f) for f in files), default=0.0)
                waited = time.monotonic() - t0
                holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": now, **(note or {})}
                for f in files:
                    f.seek(0)
                    f.truncate()
                    f.write(json.dumps(holder))
                    f.flush()
                handoff = now - released if released and waited > 0 and now - released <= waited else None
                return Claim(group, files, waited, handoff)
        time.sleep(_POLL_S)


def enter_slot(plan: PoolPlan, held: Claim) -> dict[str, Any]:
    """Make this process run in ``held``: its GPU(s) only, its share of the cores; the slot as run.json records it."""
    devices = [device_of(s) for s in held.slots] if plan.kind == "gpu" else []
    if plan.kind == "gpu":
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(dict.fromkeys(devices))
    threads = plan.threads
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:  # imported already: the variables above came too late for it
        sys.modules["torch"].set_num_threads(threads)
    slot = {
        "kind": plan.kind,
        "slots": held.slots,
        "devices": list(dict.fromkeys(devices)),
        "threads": threads,
        "host": socket.gethostname(),
        "waited_s": round(held.waited_s, 3),
    }
    if held.handoff_s is not None:  # the pool's own latency: the slot was free this long before this job had it
        slot["handoff_s"] = round(held.handoff_s, 4)
    os.environ[SLOT_ENV] = json.dumps(slot)
    return slot
