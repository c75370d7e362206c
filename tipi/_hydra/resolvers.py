"""Hydra's ``now`` resolver, fixed to one moment while the ranks of one run resolve their run directory."""

from __future__ import annotations

from datetime import datetime

from omegaconf import OmegaConf


def fix_now(moment: datetime) -> None:
    """Every ``${now:...}`` reads ``moment`` (rank 0's clock) from here on, in this process."""
    OmegaConf.register_new_resolver("now", lambda pattern: moment.strftime(pattern), use_cache=True, replace=True)


def restore_now() -> None:
    """``now`` as Hydra registers it (``hydra.core.utils``): the wall clock, cached per pattern."""
    OmegaConf.register_new_resolver(
        "now", lambda pattern: datetime.now().strftime(pattern), use_cache=True, replace=True
    )
