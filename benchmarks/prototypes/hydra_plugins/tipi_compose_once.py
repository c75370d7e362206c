"""Prototype: Hydra's basic sweeper, composing each multirun job's config once instead of twice.

Hydra's ``BasicSweeper`` composes every job's config to check it before any
job runs (``validate_batch_is_legal``), then ``BasicLauncher`` composes it
again to run it. This sweeper keeps the configs its check composed and hands
each to the launcher, which takes it instead of composing again (through a
config-loader wrapper that only the launcher sees). Errors are still found
before the first job starts; each job is composed once.

    hydra.sweeper._target_=hydra_plugins.tipi_compose_once.ComposeOnceSweeper

At most ``KEEP`` configs are kept (each is about 160 KiB); a job beyond that is
composed again when it runs, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

KEEP = 1000


class _ComposedOnce:
    """A config loader that returns a config composed earlier for the same overrides, once."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.composed: dict[tuple[str, ...], DictConfig] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """The config the sweeper's check composed for these overrides; else compose it now."""
        cfg = self.composed.pop(tuple(sweep_overrides), None)
        if cfg is None:
            cfg = self.loader.load_sweep_config(master_config, sweep_overrides)
        return cfg


class ComposeOnceSweeper(BasicSweeper):
    """``BasicSweeper`` whose launcher reuses the configs composed to check the batch."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self._once = _ComposedOnce(hydra_context.config_loader)
        shared = HydraContext(config_loader=self._once, callbacks=hydra_context.callbacks)  # type: ignore[arg-type]
        super().setup(hydra_context=shared, task_function=task_function, config=config)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Compose every job of the batch (an error stops the sweep before any job runs) and keep the configs."""
        assert self.config is not None
        for overrides in batch:
            cfg = self._once.loader.load_sweep_config(master_config=self.config, sweep_overrides=list(overrides))
            if len(self._once.composed) < KEEP:
                self._once.composed[tuple(overrides)] = cfg
