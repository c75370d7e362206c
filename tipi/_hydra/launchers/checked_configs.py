"""A multirun composes each job's config once, most of them derived from an earlier job's.

Hydra's sweeper composes every job's config to check the batch before the
first job runs; a launcher then composes it again to run it. Composing tipi's
config tree is most of a trivial job's cost, so tipi's launchers hand each job
the config the check composed (:class:`CheckedConfigs`).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class CheckedConfigs:
    """Hydra's config loader, composing each sweep job once, and most of them from an earlier job's config.

    Outside a launch, ``load_sweep_config`` composes as Hydra does and keeps the
    result (the sweeper's check of a batch); during a launch it hands over the
    kept config for the same overrides, once, and composes only what was not
    kept. What a launch leaves (a job the launch never reached) is dropped when
    it ends. Anything else goes to Hydra's loader unchanged.

    Jobs that choose the same config groups and differ only in values (``seed=1,2,3``,
    ``optimizer.lr=...``) share everything Hydra builds before it applies value
    overrides. The second such job has Hydra compose that shared part once (a
    *base*); every later one is a copy of the base with its own value overrides
    applied by Hydra's own function, and its override bookkeeping
    (``hydra.overrides.task``, ``hydra.job.override_dirname``) set as Hydra sets it.
    Before a base is used it must reproduce the first job's config exactly, as
    Hydra composed it; if it does not (another Hydra version), every job is
    composed in full. Overrides of ``hydra.*`` keys and of packages are always
    composed in full.
    """

    KEEP = 256  # configs of one batch kept at most (about 160 KiB each); further jobs are composed at launch

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.kept: dict[tuple[str, ...], DictConfig] = {}
        self.launching = False
        self.derive = True  # False once a base failed its check, or Hydra's internals are not as expected
        self._repo: Any = None
        self._first: dict[tuple[str, ...], list[str]] = {}  # group choices -> the first job that made them
        self._bases: dict[tuple[str, ...], DictConfig] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """The job's config: the one the check composed (once, at launch), else composed now."""
        key = tuple(sweep_overrides)
        if self.launching and key in self.kept:
            return self.kept.pop(key)
        cfg = self._compose(master_config, list(sweep_overrides))
        if not self.launching and len(self.kept) < self.KEEP:
            self.kept[key] = cfg  # the check only composes; it neither keeps nor changes the config
        return cfg

    def _compose(self, master: DictConfig, overrides: list[str]) -> DictConfig:
        split = self._split(master, overrides) if self.derive else None
        if split is None:
            return self.loader.load_sweep_config(master, overrides)
        groups, values, parsed = split
        base = self._bases.get(groups)
        if base is None:
            first = self._first.setdefault(groups, overrides)
            if first == overrides:  # the first job with these choices: Hydra composes it
                return self.loader.load_sweep_config(master, overrides)
            base = self._make_base(master, groups, first)
            if base is None:
                return self.loader.load_sweep_config(master, overrides)
        return self._apply(base, master, parsed, values)

    def _split(self, master: DictConfig, overrides: list[str]) -> tuple[tuple[str, ...], list[Any], list[Any]] | None:
        """(group overrides, value overrides, all parsed) by Hydra's rule; None where the job must be composed."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        if self._repo is None:  # the search path of this sweep (hydra.searchpath included), as Hydra builds it
            try:
                _, self._repo = self.loader._parse_overrides_and_create_caching_repo(
                    master.hydra.job.config_name, list(master.hydra.overrides.hydra)
                )
            except Exception:  # noqa: BLE001 - not the Hydra 1.3 internals this relies on: compose every job
                self.derive = False
                return None
        try:
            parsed = OverridesParser.create().parse_overrides(overrides=overrides)
        except Exception:  # noqa: BLE001 - Hydra's own composition reports the bad override
            return None
        groups: list[str] = []
        values: list[Any] = []
        for override in parsed:
            if override.is_hydra_override() or override.package is not None or override.is_sweep_override():
                return None
            # Hydra's rule (defaults_list.Overrides): a dict value or a key that is no group is a value override
            if isinstance(override.value(), dict) or not self._repo.group_exists(override.key_or_group):
                values.append(override)
            else:
                groups.append(str(override.input_line))
        return tuple(groups), values, parsed

    def _make_base(self, master: DictConfig, groups: tuple[str, ...], first: list[str]) -> DictConfig | None:
        """Hydra's composition with these group choices only, if it reproduces the first job's config."""
        base = self.loader.load_sweep_config(master, list(groups))
        first_cfg = self.kept.get(tuple(first))
        if first_cfg is None:
            first_cfg = self.loader.load_sweep_config(master, first)
        first_split = self._split(master, first)
        assert first_split is not None
        again = self._apply(base, master, first_split[2], first_split[1])
        if OmegaConf.to_container(again, resolve=False) != OmegaConf.to_container(first_cfg, resolve=False):
            log.debug("a job's config derived from its groups' base differs from Hydra's; composing every job")
            self.derive = False
            return None
        self._bases[groups] = base
        return base

    @staticmethod
    def _apply(base: DictConfig, master: DictConfig, parsed: list[Any], values: list[Any]) -> DictConfig:
        """A copy of ``base`` with the value overrides and the override bookkeeping of ``parsed`` (as Hydra does)."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
        from hydra.errors import ConfigCompositionException
        from omegaconf.errors import OmegaConfBaseException

        cfg = copy.deepcopy(base)
        try:
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        except OmegaConfBaseException as exc:  # as Hydra's load_configuration reports it
            raise ConfigCompositionException().with_traceback(exc.__traceback__) from exc
        cfg.hydra.overrides.task = [override.input_line for override in parsed]
        dirname = cfg.hydra.job.config.override_dirname
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=parsed, exclude_keys=list(dirname.exclude_keys), item_sep=dirname.item_sep, kv_sep=dirname.kv_sep
        )
        OmegaConf.copy_cache(from_config=master, to_config=cfg)
        return cfg
