"""The doctor's torch side, run as ``python -m tipi.doctor.worker TASK [ARGS]`` in a child process.

Tasks: ``torch`` (build, versions, devices), ``torchvision`` (does it load
beside this torch), ``smoke DEVICE`` (a few training steps of the seg model),
``allreduce BACKEND`` (one rank of a collective; RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT from the environment) and ``wandb-key``. Each prints
its answer as one JSON line after :data:`~tipi.doctor.procs.RESULT_PREFIX`.

The functions are importable too, so tests can call them in-process with
torch's CUDA functions faked.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from tipi.doctor.procs import RESULT_PREFIX


def _cuda_device(index: int) -> dict[str, Any]:
    import torch

    from tipi.permanences.device import _free_memory

    free = _free_memory(index)  # the driver's figure, as device=auto sees it
    total = int(torch.cuda.mem_get_info(index)[1])
    props = torch.cuda.get_device_properties(index)
    return {
        "index": index,
        "name": str(props.name),
        "total": total,
        "free": free,
        "capability": f"{props.major}.{props.minor}",
    }


def _auto_choice() -> dict[str, str]:
    """Which device ``device=auto`` picks, by tipi's own selection code, and why."""
    import torch

    from tipi.permanences.device import resolve_device

    chosen = resolve_device("auto")
    if chosen.type == "cuda":
        why = f"most free memory of {torch.cuda.device_count()} CUDA device(s)"
    elif chosen.type == "mps":
        why = "no CUDA device; MPS is available"
    else:
        why = "no CUDA device and no MPS"
    return {"device": str(chosen), "why": why}


def devices_info() -> dict[str, Any]:
    """CUDA devices (name, memory, capability), MPS, CPU threads and ``device=auto``'s choice."""
    import torch

    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None)
    return {
        "cuda_available": bool(cuda),
        "cuda_devices": [_cuda_device(i) for i in range(torch.cuda.device_count())] if cuda else [],
        "mps_built": bool(mps is not None and mps.is_built()),
        "mps_available": bool(mps is not None and mps.is_available()),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "auto": _auto_choice(),
    }


def torch_info() -> dict[str, Any]:
    """torch's version and build (CPU, CUDA or ROCm; CUDA and cuDNN versions), then the devices."""
    import torch

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    info = {
        "version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "hip": getattr(torch.version, "hip", None),
        "cudnn": cudnn,
        "nccl": torch.distributed.is_nccl_available() if torch.distributed.is_available() else False,
    }
    return {**info, **devices_info()}


def torchvision_info() -> dict[str, Any]:
    """Import torchvision beside torch and run one of its compiled operators (where a mismatch shows)."""
    import importlib

    import torch

    # imported by name: torchvision is optional, and mypy may not find it
    torchvision = importlib.import_module("torchvision")
    importlib.import_module("torchvision.ops").nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([1.0]), 0.5)
    return {
        "version": torchvision.__version__,
        "cuda": getattr(torchvision.version, "cuda", None),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
    }


def allreduce(backend: str) -> dict[str, Any]:
    """One rank of a ``backend`` all-reduce of ``rank + 1``; the sum must be ``1 + ... + world``."""
    import datetime

    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    timeout = float(os.environ.get("TIPI_DOCTOR_TIMEOUT", "30"))
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    try:
        value = torch.tensor([float(rank + 1)], device=device)
        dist.all_reduce(value)
        total = float(value.item())
    finally:
        dist.destroy_process_group()
    return {"rank": rank, "world": world, "sum": total, "expected": world * (world + 1) / 2}


def wandb_key() -> dict[str, Any]:
    """Whether WandB has an API key (tipi's own test; never prompts, never dials out, never prints the key)."""
    from tipi.trackers.wandb import has_credentials

    return {"has_key": has_credentials()}


def _smoke(device: str) -> dict[str, Any]:
    from tipi.doctor.smoke import smoke_run

    return smoke_run(device)


TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "torch": torch_info,
    "torchvision": torchvision_info,
    "smoke": _smoke,
    "allreduce": allreduce,
    "wandb-key": wandb_key,
}


def main(argv: list[str]) -> int:
    """Run one task; its answer (or its error) goes to stdout as one JSON line."""
    task, args = argv[0], argv[1:]
    try:
        data = TASKS[task](*args)
        code = 0
    except Exception as exc:  # noqa: BLE001 - the error is the answer; the parent turns it into a row
        first = (str(exc).splitlines() or [""])[0]
        data, code = {"error": f"{type(exc).__name__}: {first}"[:500]}, 1
    print(RESULT_PREFIX + json.dumps(data), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
