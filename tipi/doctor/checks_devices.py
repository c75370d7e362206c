"""The devices check: every CUDA device, MPS, the CPU's threads, and what ``device=auto`` picks."""

from __future__ import annotations

import os
from typing import Any

from tipi.doctor.context import DoctorContext
from tipi.doctor.result import GIB, CheckResult, failed, ok, skipped, warning

BUSY_FRACTION = 0.1  # a GPU with less than this share of its memory free is in use by someone else
CPU_TORCH = (
    "this torch is a CPU build: install a CUDA build "
    "(pip install torch --index-url https://download.pytorch.org/whl/cu126)"
)
NO_GPU_VISIBLE = (
    "no GPU is visible: check nvidia-smi, CUDA_VISIBLE_DEVICES, and that the job asked SLURM "
    "for one (#SBATCH --gres=gpu:1)"
)


def _cpu_row(info: dict[str, Any]) -> CheckResult:
    threads, usable, cores = info.get("threads"), info.get("affinity"), info.get("cpu_count")
    detail = f"{threads} torch threads; {usable} of {cores} cores usable by this process"
    try:
        load = os.getloadavg()[0]
        detail += f"; load average {load:.1f}"
    except (AttributeError, OSError):  # no load average here
        load = None
    if isinstance(threads, int) and isinstance(usable, int) and threads > usable:
        return warning(
            "cpu", detail, f"torch runs more threads than it has cores: set OMP_NUM_THREADS={usable}", "devices"
        )
    if load is not None and isinstance(usable, int) and load > usable:
        return warning(
            "cpu",
            detail + " (busy: other work on the cores)",
            "fewer torch threads often train faster on a busy machine: OMP_NUM_THREADS=1 python -m tipi ...",
            "devices",
        )
    return ok("cpu", detail, "devices")


def _cuda_row(dev: dict[str, Any]) -> CheckResult:
    name = f"cuda:{dev['index']}"
    free, total = dev["free"] / GIB, dev["total"] / GIB
    detail = f"{dev['name']}, {free:.1f} of {total:.1f} GiB free, compute capability {dev['capability']}"
    if total > 0 and free / total < BUSY_FRACTION:
        return warning(
            name,
            detail,
            "this GPU is mostly in use by other processes: pick another (device=cuda:N) or check nvidia-smi",
            "cuda",
        )
    return ok(name, detail, "cuda")


def _no_cuda_row(info: dict[str, Any]) -> CheckResult:
    cpu_build = "cuda_version" in info and not info["cuda_version"] and not info.get("hip")
    return skipped("cuda", "no CUDA device", "cuda", CPU_TORCH if cpu_build else NO_GPU_VISIBLE)


def _mps_row(info: dict[str, Any]) -> CheckResult:
    if info.get("mps_available"):
        return ok("mps", "available (Apple GPU)", "mps")
    if info.get("mps_built"):
        return skipped(
            "mps",
            "torch has MPS support but no MPS device is available",
            "mps",
            "MPS needs macOS 12.3+ on Apple silicon",
        )
    return skipped("mps", "no MPS (Apple silicon only)", "mps")


def _auto_row(info: dict[str, Any]) -> CheckResult:
    auto = info.get("auto") or {}
    chosen = str(auto.get("device", "?"))
    detail = f"device=auto picks {chosen}: {auto.get('why', '?')}"
    for dev in info.get("cuda_devices", []):
        if chosen in (f"cuda:{dev['index']}", "cuda"):
            detail += f" ({dev['free'] / GIB:.1f} GiB free)"
    return ok("device=auto", detail, "devices")


def device_results(info: dict[str, Any]) -> list[CheckResult]:
    """The rows for what the torch probe found (``tipi.doctor.worker.devices_info`` or ``torch_info``)."""
    rows = [_cpu_row(info)]
    cuda = info.get("cuda_devices") or []
    rows += [_cuda_row(dev) for dev in cuda] if cuda else [_no_cuda_row(info)]
    rows += [_mps_row(info), _auto_row(info)]
    return rows


def check_devices(ctx: DoctorContext) -> list[CheckResult]:
    """Every device torch can see, from the torch probe."""
    outcome = ctx.torch()
    if outcome.error:
        return [
            failed(
                "devices",
                f"cannot list devices: torch did not load ({outcome.error})",
                "fix the torch row first",
                "devices",
            )
        ]
    return device_results(outcome.data)
