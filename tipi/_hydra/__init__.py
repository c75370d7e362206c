"""The Hydra seam: every touch of Hydra's, OmegaConf's or hydra-submitit-launcher's internals.

The rest of tipi imports only what this package's ``__all__`` names (and the
Hydra callbacks and launchers name their classes here in YAML). Inside:

- ``patches``: the table of private callables tipi wraps or reaches, behind one
  version-checked :func:`install` / :func:`uninstall` (and :func:`installed`, a
  context manager for tests); ``tests/unit/test_hydra_seam.py`` is the canary;
- ``compose_once``: a single run composes its config once;
- ``params_hook``, ``help``, ``nodes``: signature parameters as config keys and in ``--help``;
- ``errors``: Hydra's composition errors told the way tipi tells its own;
- ``command_line``: overrides checked one by one before Hydra parses them;
- ``callbacks``: one run directory for every rank, a writable output directory, the multirun summary;
- ``launchers``: ``launcher=local`` (in process), ``submitit_local`` and ``slurm`` (submitit);
- ``resolvers``: Hydra's ``now`` fixed to rank 0's clock;
- ``outputs``: a refused config leaves no output directory behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tipi._hydra.command_line import check_overrides, is_multirun
from tipi._hydra.launchers import register_launchers
from tipi._hydra.outputs import discard_if_untouched
from tipi._hydra.patches import HydraVersionError, install, installed, installed_parts, uninstall

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = [
    "HydraVersionError",
    "check_overrides",
    "check_param_key",
    "discard_if_untouched",
    "install",
    "install_for_command_line",
    "installed",
    "installed_parts",
    "is_multirun",
    "register_launchers",
    "uninstall",
]

ALL_PARTS = ("compose_once", "params", "errors")


def install_for_command_line(argv: list[str]) -> None:
    """What ``python -m tipi ARGV`` needs: every patch (a single run composes once), launchers for a multirun."""
    # only a multirun instantiates a launcher; an hparams_search file may make one itself (hydra.mode: MULTIRUN)
    searching = any(a.lstrip("+").startswith(("hparams_search=", "search=", "hydra.mode=MULTIRUN")) for a in argv)
    if {"-m", "--multirun"} & set(argv) or searching:
        register_launchers()
        install("params", "errors")
    else:
        install(*ALL_PARTS)


def check_param_key(key: str, cfg: DictConfig) -> None:
    """A ``ConfigError`` if overriding ``key`` in ``cfg`` would be refused: no such process, permanence or parameter.

    For keys a later composition will set (a WandB sweep's parameter names), so
    the mistake is reported before the first run.
    """
    from tipi._hydra.params_hook import check_key

    check_key(key, cfg)
