"""The device permanence: which accelerator a run uses.

``auto`` picks the CUDA device with the most free memory as the driver
reports it (``torch.cuda.mem_get_info``, not this process's allocator), else
MPS, else the CPU. A named device that does not exist is a clear error that
lists the devices that do.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import TYPE_CHECKING, Any

from tipi.core.context import get_current_controller
from tipi.core.errors import DeviceError
from tipi.core.permanence import Permanence
from tipi.core.provenance import describe_device

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch

_SPEC = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
VALID_SPECS = "auto, cpu, cuda, cuda:N, mps"


def check_spec(spec: str, key: str = "device") -> str:
    """Check the spelling of a device spec without importing torch."""
    spec = str(spec).strip().lower()
    if not _SPEC.match(spec):
        raise DeviceError(f"'{spec}' is not a device. Valid: {VALID_SPECS}", key=key)
    return spec


# Device nodes an accelerator driver creates on Linux: NVIDIA, ROCm (torch's "cuda" on AMD), WSL2.
_ACCELERATOR_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def _cpu_only_without_torch() -> bool:
    """True when this is certainly a CPU-only machine, decided without importing torch.

    A Linux machine with no accelerator device node can run nothing but the
    CPU. Anywhere else (macOS has MPS, Windows has no /dev), or once torch is
    loaded anyway (tests fake its CUDA functions), torch is asked instead.
    """
    return (
        sys.platform.startswith("linux")
        and "torch" not in sys.modules
        and not any(os.path.exists(node) for node in _ACCELERATOR_NODES)
    )


def available_devices() -> list[str]:
    """Every device this machine has, e.g. ``['cpu', 'cuda:0', 'cuda:1']``."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def _free_memory(index: int) -> int:
    import torch

    free, _total = torch.cuda.mem_get_info(index)
    return int(free)


def resolve_device(spec: str = "auto", key: str = "device") -> torch.device:
    """The ``torch.device`` for ``spec``; a ``DeviceError`` naming ``key`` if there is none."""
    import torch

    spec = check_spec(spec, key)
    if spec == "auto":
        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            best = max(range(torch.cuda.device_count()), key=_free_memory)
            return torch.device("cuda", best)
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    check_exists(spec, key)
    return torch.device("cuda:0" if spec == "cuda" else spec)


def check_exists(spec: str, key: str = "device") -> None:
    """A ``DeviceError`` naming ``key`` and listing the devices there are, if ``spec`` is not one of them.

    On a CPU-only Linux machine this answers without importing torch, so a
    wrong ``device=cuda:1`` is reported in well under a second.
    """
    spec = check_spec(spec, key)
    if spec in ("auto", "cpu"):
        return
    wanted = "cuda:0" if spec == "cuda" else spec
    devices = ["cpu"] if _cpu_only_without_torch() else available_devices()
    if wanted not in devices:
        raise DeviceError(
            f"'{spec}' does not exist on this machine. Available: {', '.join(devices)}",
            key=key,
            hint="Use device=auto to pick the best available device.",
        )


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a SLURM job's share, a taskset), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def busy_machine_note(threads: int) -> str | None:
    """One line when the machine is busy: the 1-minute load average above the cores this process may use.

    tipi changes no thread count itself; the line names the figure and the setting that helps.
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average here
        return None
    cores = usable_cores()
    if load <= cores:
        return None
    return (
        f"this machine is busy: load average {load:.1f} over the last minute on {cores} usable core(s), and torch "
        f"runs {threads} thread(s) here; with other work on the cores, fewer threads often train faster "
        f"(OMP_NUM_THREADS=1 python -m tipi ...)"
    )


class Device(Permanence):
    """Selects the run's device in ``initialize()``; ``device`` is a ``torch.device`` afterwards."""

    def __init__(self, spec: str = "auto", min_free_memory_gb: float = 0.0) -> None:
        # Checked here, when the pipeline is built, so a missing GPU stops the
        # run before its record, metrics or checkpoints are written.
        self.spec = check_spec(spec)
        check_exists(self.spec)
        if float(min_free_memory_gb) < 0:
            raise DeviceError(
                f"must be at least 0 (GB of free memory the device needs), got {min_free_memory_gb}",
                key="permanences.device.min_free_memory_gb",
            )
        self.min_free_memory_gb = float(min_free_memory_gb)
        self.device: torch.device | None = None

    def initialize(self) -> None:
        """Resolve the spec to a device that exists; on the CPU, say so when the machine is busy."""
        self.device = resolve_device(self.spec)
        controller = get_current_controller()
        record = controller.context.record if controller is not None else None
        if record is not None:  # saved with the record's next write; `tipi-runs reproduce` compares it
            record.data["device"] = describe_device(self.device)
        if self.device.type == "cpu":
            import torch

            note = busy_machine_note(torch.get_num_threads())
            if note:
                log.warning("%s", note)

    @property
    def type(self) -> str:
        """``cpu``, ``cuda`` or ``mps`` (``cpu`` before initialize)."""
        return self.device.type if self.device is not None else "cpu"

    def validate(self) -> None:
        """Fail when a CUDA device has less free memory than ``min_free_memory_gb``."""
        if self.device is None or self.device.type != "cuda" or self.min_free_memory_gb <= 0:
            return
        free_gb = _free_memory(self.device.index or 0) / 2**30
        if free_gb < self.min_free_memory_gb:
            raise DeviceError(
                f"{self.device} has {free_gb:.2f} GiB free, below the required {self.min_free_memory_gb} GiB",
                key="permanences.device.min_free_memory_gb",
                hint="Choose another device (device=cuda:N or device=auto) or lower the threshold.",
            )

    def get_state(self) -> dict[str, Any]:
        """The chosen device."""
        return {"device": str(self.device) if self.device is not None else None}

    def cleanup(self) -> None:
        """Release cached CUDA memory so the next job of a multirun starts clean."""
        if self.device is not None and self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()
        self.device = None
