"""The ``distributed`` config group's settings, checked before any worker starts (no torch)."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from tipi.core.errors import ConfigError

log = logging.getLogger(__name__)
BACKENDS = ("auto", "gloo", "nccl")
# Device nodes an NVIDIA or ROCm driver creates on Linux (as tipi.permanences.device reads them)
_CUDA_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd")


def cuda_present() -> bool:
    """True when this machine may have a CUDA device (asks torch only once it is loaded anyway)."""
    if "torch" in sys.modules:
        import torch

        return bool(torch.cuda.is_available())
    return not sys.platform.startswith("linux") or any(os.path.exists(n) for n in _CUDA_NODES)


def cpu_cores() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    """``distributed.*``: how many ranks, which backend, how long a collective may wait."""

    backend: str = "auto"
    nproc_per_node: int = 2
    nnodes: int = 1
    timeout_s: float = 300.0
    sync_batchnorm: bool = False

    @classmethod
    def from_config(cls, node: Any) -> Settings:
        """Read and check a ``distributed`` node (a mapping); a ``ConfigError`` naming the key."""
        values = {
            k: node[k] for k in ("backend", "nproc_per_node", "nnodes", "timeout_s", "sync_batchnorm") if k in node
        }
        settings = cls(**values)
        settings.check()
        return settings

    @property
    def world_size(self) -> int:
        """Ranks in all: ``nproc_per_node * nnodes``."""
        return int(self.nproc_per_node) * int(self.nnodes)

    def check(self, device: str | None = None, runs_here: bool = False) -> None:
        """Refuse what cannot run; ``runs_here``: also what cannot run on this machine (nccl without CUDA).

        A config composed on a login node for GPU nodes (``launcher=slurm``) is checked for CUDA where it runs.
        """
        for key in ("nproc_per_node", "nnodes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"must be a whole number of at least 1, got {value!r}",
                    key=f"distributed.{key}",
                    hint="distributed.nproc_per_node=2 starts two ranks on this machine.",
                )
        if self.backend not in BACKENDS:
            from tipi.core.errors import did_you_mean

            guess = did_you_mean(str(self.backend), BACKENDS)
            raise ConfigError(
                f"'{self.backend}' is not a backend. Valid: {', '.join(BACKENDS)}",
                key="distributed.backend",
                hint=f"Did you mean '{guess}'?" if guess else None,
            )
        if not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0:
            raise ConfigError(
                f"must be a positive number of seconds, got {self.timeout_s!r}", key="distributed.timeout_s"
            )
        if runs_here and self.backend == "nccl" and ((device or "auto") in ("cpu", "mps") or not cuda_present()):
            raise ConfigError(
                "nccl needs CUDA devices, and this run has none",
                key="distributed.backend",
                hint="Use distributed.backend=gloo (or auto) on a CPU machine.",
            )

    def warn_oversubscribed(self, device: str | None) -> None:
        """A log warning when CPU ranks outnumber the cores: they would time-share, slower than one process."""
        if (device or "auto") in ("cpu",) or not cuda_present():
            cores = cpu_cores()
            if self.nproc_per_node > cores:
                log.warning(
                    "distributed.nproc_per_node=%d CPU ranks on %d core(s): they will time-share the "
                    "cores and run slower than fewer ranks; lower distributed.nproc_per_node",
                    self.nproc_per_node,
                    cores,
                )
