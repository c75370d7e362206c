"""Compose one sweep run's config the way the command line would have.

A sweep run's config is the command line's overrides (minus ``+sweep=...``)
plus the run's parameters, composed again by Hydra, so config-group choices
(``model=unet_small``) work like any other parameter.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from tipi._hydra import install as install_seam
from tipi.core.config import CONFIG_NAME, normalize_overrides, register_resolvers
from tipi.core.errors import ConfigError, TipiError

# Keys of the command line that belong to the sweep, not to its runs.
SWEEP_ONLY_KEYS = ("sweep", "resume")
CONFIG_MODULE = "tipi.conf"


def override_key(override: str) -> str:
    """The config key (or group) an override sets: ``+sweep=x`` -> ``sweep``, ``a.b=1`` -> ``a.b``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return str(OverridesParser.create().parse_override(override).key_or_group)


def _is_under(key: str, roots: Iterable[str]) -> bool:
    return any(key == root or key.startswith(f"{root}.") or key.startswith(f"{root}/") for root in roots)


def command_line_overrides(sweep_dir: Path | None = None) -> list[str]:
    """The running job's overrides; for ``resume=<sweep dir>``, the ones stored with that sweep."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    overrides = list(HydraConfig.get().overrides.task)
    if sweep_dir is not None and any(override_key(o) == "resume" for o in overrides):
        stored = Path(sweep_dir) / ".hydra" / "overrides.yaml"
        if stored.is_file():
            loaded = OmegaConf.to_container(OmegaConf.load(stored))
            assert isinstance(loaded, list)
            overrides = [str(o) for o in loaded]
    return overrides


def run_overrides(base: Sequence[str], params: Sequence[str]) -> list[str]:
    """``base`` without the sweep's own keys and without keys the run's ``params`` set, then ``params``."""
    taken = {override_key(p) for p in params}
    kept = [
        o
        for o in normalize_overrides(list(base))
        if not _is_under(override_key(o), SWEEP_ONLY_KEYS) and override_key(o) not in taken
    ]
    return kept + list(params)


def compose(overrides: Sequence[str], run_dir: Path) -> DictConfig:
    """Hydra's composition of ``overrides`` for a job in ``run_dir``, ``hydra`` node included.

    Inside ``python -m tipi`` the running GlobalHydra is reused, so a user's
    ``--config-dir`` applies to sweep runs too; outside it, tipi's packaged
    config tree is used.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_resolvers()
    install_seam("params")  # a run's parameters may name any parameter of a process or permanence, without +
    overrides = normalize_overrides(list(overrides))
    try:
        if GlobalHydra.instance().is_initialized():
            name = HydraConfig.get().job.config_name if HydraConfig.initialized() else CONFIG_NAME
            cfg = hydra_compose(config_name=name or CONFIG_NAME, overrides=overrides, return_hydra_config=True)
        else:
            with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
                cfg = hydra_compose(config_name=CONFIG_NAME, overrides=overrides, return_hydra_config=True)
    except TipiError:
        raise  # already names the key (an unknown parameter, with its target's valid ones)
    except (HydraException, OmegaConfBaseException) as exc:
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot compose a sweep run's config: {first_line}", key="sweep.parameters") from exc
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(Path(run_dir).absolute())
    return cfg


def job_config(full: DictConfig) -> DictConfig:
    """The job's config: ``full`` without its ``hydra`` node (what Hydra hands a task function)."""
    job = copy.deepcopy(full)
    with open_dict(job):
        del job["hydra"]
    return job


@contextlib.contextmanager
def hydra_job(full: DictConfig) -> Iterator[None]:
    """Make ``full``'s ``hydra`` node the current HydraConfig while a sweep run runs, as Hydra does per job.

    So ``${hydra:runtime.output_dir}`` and ``${hydra:runtime.choices.model}``
    mean this run, and its ``run.json`` records its own overrides. The
    sweep's own HydraConfig (or none) is put back afterwards.
    """
    from hydra.core.hydra_config import HydraConfig

    instance = HydraConfig.instance()
    previous = instance.cfg
    instance.set_config(copy.deepcopy(full))
    try:
        yield
    finally:
        instance.cfg = previous


def save(full: DictConfig, job: DictConfig, overrides: Sequence[str], run_dir: Path) -> None:
    """``<run dir>/.hydra/``: ``config.yaml``, ``hydra.yaml`` and ``overrides.yaml``, as Hydra writes them."""
    hydra_dir = Path(run_dir) / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(job, hydra_dir / "config.yaml")
    OmegaConf.save(OmegaConf.masked_copy(full, "hydra"), hydra_dir / "hydra.yaml")
    OmegaConf.save(OmegaConf.create(list(overrides)), hydra_dir / "overrides.yaml")
