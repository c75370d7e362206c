"""``launcher=local``: the jobs of a multirun run in this process, one after another."""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from tipi._hydra.launchers.checked_configs import CheckedConfigs
from tipi._hydra.launchers.precheck import refuse_bad_jobs
from tipi.core.errors import ConfigError
from tipi.runs.submit import launcher_wait, refuse


class InProcess(BasicLauncher):
    """``launcher=local``: Hydra's basic launcher (jobs in this process, one after another), each composed once.

    Each job runs with the config the sweeper composed to check it (:class:`CheckedConfigs`).
    """

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Give the sweeper and this launcher one :class:`CheckedConfigs` (the sweeper holds the same context)."""
        if not isinstance(hydra_context.config_loader, CheckedConfigs):
            hydra_context.config_loader = CheckedConfigs(hydra_context.config_loader)  # type: ignore[assignment]  # a wrapper with the loader's interface
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Hydra's basic launch, taking the checked configs; nothing kept outlives it."""
        if not launcher_wait(self.config):
            refuse(
                ConfigError(
                    "launcher=local runs the jobs in this process, one after another: it cannot return before they end",
                    key="launcher.wait",
                    hint="Detach with launcher=pool (this machine's GPUs or cores) or launcher=slurm, "
                    "and launcher.wait=false; "
                    "or run this sweep under nohup / tmux.",
                )
            )
        checked = self.hydra_context.config_loader if self.hydra_context is not None else None
        refuse_bad_jobs(checked, self.config, job_overrides, initial_job_idx)  # tipi's gate on every job first
        if not isinstance(checked, CheckedConfigs):
            return super().launch(job_overrides, initial_job_idx)
        checked.launching = True
        try:
            return super().launch(job_overrides, initial_job_idx)
        finally:
            checked.launching = False
            checked.kept.clear()
