"""tipi's Hydra launchers: what starts the jobs of a multirun.

- ``launcher=auto`` (the default): :class:`~tipi._hydra.launchers.auto.Auto`, the pool where GPUs
  are visible, else ``launcher=local``.
- ``launcher=local``: :class:`~tipi._hydra.launchers.in_process.InProcess`, Hydra's basic
  launcher (every job in this process, one after another), each job composed once.
- ``launcher=pool``: :class:`~tipi._hydra.launchers.pool.Pool`, submitit's local executor with
  ``workers`` jobs at a time, each on a slot (a GPU, a share of the cores) it claims machine-wide.
- ``launcher=submitit_local`` / ``launcher=slurm``: :class:`~tipi._hydra.launchers.submitit.TolerantGather`,
  hydra-submitit-launcher whose multirun survives a job that dies.

Hydra instantiates launchers only from classes under the ``hydra_plugins``
namespace: the concrete classes are declared in ``hydra_plugins/tipi_launcher``;
the behaviour is here.
"""

from __future__ import annotations

import importlib

LAUNCHERS_MODULE = "hydra_plugins.tipi_launcher.launchers"
SEARCH_MODULE = "hydra_plugins.tipi_launcher.search"
OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
LAUNCHERS = (
    "AutoLauncher",
    "InProcessLauncher",
    "SubmititLocalLauncher",
    "PoolLauncher",
    "SlurmLauncher",
    "BasicLauncher",
    "LocalLauncher",
)


def register_launchers() -> None:
    """Make tipi's launchers known to Hydra however tipi was installed.

    Hydra finds plugins by scanning the ``hydra_plugins`` namespace package's
    folders, which pip's default editable install (a PEP 660 import hook) does
    not expose; registering the classes through Hydra's public
    ``Plugins.register`` works for every install. A scan that found them
    already makes this a dictionary look-up.
    """
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()
    if not all(f"{LAUNCHERS_MODULE}.{name}" in plugins.class_name_to_class for name in LAUNCHERS):
        module = importlib.import_module(LAUNCHERS_MODULE)
        for name in LAUNCHERS:
            plugins.register(getattr(module, name))
    sweeper = f"{SEARCH_MODULE}.SearchSweeper"
    if sweeper not in plugins.class_name_to_class:
        plugins.register(importlib.import_module(SEARCH_MODULE).SearchSweeper)
    # an hparams_search file that names hydra-optuna-sweeper's class (lightning-hydra-template's do) runs on
    # tipi's search, which takes the same keys; where that plugin is installed, its own class stays
    plugins.class_name_to_class.setdefault(OPTUNA_SWEEPER, plugins.class_name_to_class[sweeper])
