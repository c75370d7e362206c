"""``launcher=slurm`` / ``launcher=submitit_local``: submitit launchers whose sweep survives a lost job.

The behaviour lives in :mod:`tipi.launchers`; Hydra instantiates launchers only
from classes defined under the ``hydra_plugins`` namespace, so they are declared here.
"""

from hydra_plugins.hydra_submitit_launcher import submitit_launcher as _hsl

from tipi import launchers as _tipi


class SlurmLauncher(_tipi.TolerantGather, _hsl.SlurmLauncher):
    """Hydra's ``submitit_slurm`` launcher; a lost job is a failed row, not an aborted sweep."""


class LocalLauncher(_tipi.TolerantGather, _hsl.LocalLauncher):
    """Hydra's ``submitit_local`` launcher; a lost job is a failed row, not an aborted sweep."""


class BasicLauncher(_tipi.ComposeOnce):
    """Hydra's ``basic`` launcher (``launcher=local``); each job's config is composed once, not twice."""
