"""tipi's launchers, declared where Hydra instantiates launchers from (the ``hydra_plugins`` namespace).

``launcher=auto`` (the default) is :class:`AutoLauncher`, ``launcher=local``
:class:`InProcessLauncher`, ``launcher=pool`` :class:`PoolLauncher`,
``launcher=submitit_local`` :class:`SubmititLocalLauncher`, ``launcher=slurm``
:class:`SlurmLauncher`. The behaviour lives in :mod:`tipi._hydra.launchers`.
"""

import warnings
from typing import Any

from hydra_plugins.hydra_submitit_launcher import submitit_launcher as _hsl

from tipi._hydra.launchers.auto import Auto as _Auto
from tipi._hydra.launchers.in_process import InProcess as _InProcess
from tipi._hydra.launchers.pool import Pool as _Pool
from tipi._hydra.launchers.submitit import TolerantGather as _TolerantGather


class SlurmLauncher(_TolerantGather, _hsl.SlurmLauncher):
    """``launcher=slurm``: Hydra's ``submitit_slurm`` launcher; a lost job is a failed row, not an aborted sweep."""


class SubmititLocalLauncher(_TolerantGather, _hsl.LocalLauncher):
    """``launcher=submitit_local``: each job a local process started by submitit; a lost job is a failed row."""


class PoolLauncher(_Pool, _hsl.LocalLauncher):
    """``launcher=pool``: jobs as local processes, ``workers`` at a time, each on a GPU or a share of the cores."""


class AutoLauncher(_Auto):
    """``launcher=auto`` (the default): ``launcher=pool`` where GPUs are visible, else ``launcher=local``."""


class InProcessLauncher(_InProcess):
    """``launcher=local``: every job in this process, one after another; each job's config composed once."""


def _renamed(old: str, new: type) -> None:
    warnings.warn(
        f"hydra_plugins.tipi_launcher.launchers.{old} is now {new.__name__}; update the launcher's _target_",
        DeprecationWarning,
        stacklevel=3,
    )


class BasicLauncher(InProcessLauncher):
    """Deprecated name of :class:`InProcessLauncher` (``launcher=local``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _renamed("BasicLauncher", InProcessLauncher)
        super().__init__(*args, **kwargs)


class LocalLauncher(SubmititLocalLauncher):
    """Deprecated name of :class:`SubmititLocalLauncher` (``launcher=submitit_local``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _renamed("LocalLauncher", SubmititLocalLauncher)
        super().__init__(*args, **kwargs)
