"""``launcher=auto`` (the default): the pool where GPUs are visible, else every job in this process.

On a machine with GPUs a local multirun should use all of them, one job per
GPU (``launcher=pool``); on a CPU-only machine a small multirun keeps the
in-process launcher's per-job cost (``launcher=local``). The choice is made
when the multirun starts, from what ``nvidia-smi`` lists (no CUDA context in
the launcher); ``device=cpu`` always takes the in-process launcher. Any
``launcher=`` on the command line replaces this.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from tipi._hydra.launchers.slots import visible_gpus

log = logging.getLogger(__name__)


class Auto(Launcher):
    """Picks ``launcher=pool`` or ``launcher=local`` in :meth:`setup`, then hands it every call."""

    def __init__(self, **params: Any) -> None:
        self.params = params  # the pool's (submitit's) settings, used when the pool is picked
        self.chosen: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Choose by the machine, then set the chosen launcher up."""
        from hydra_plugins.tipi_launcher.launchers import InProcessLauncher, PoolLauncher

        device = str(OmegaConf.select(config, "device", default="auto") or "auto").lower()
        gpus = [] if device == "cpu" else visible_gpus()
        if gpus:
            log.info("launcher=auto: %d GPU(s) visible, so the pool (launcher=pool): one job per GPU", len(gpus))
            self.chosen = PoolLauncher(**self.params)
        else:
            self.chosen = InProcessLauncher()
        self.chosen.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """The chosen launcher's launch."""
        assert self.chosen is not None
        return self.chosen.launch(job_overrides, initial_job_idx)
