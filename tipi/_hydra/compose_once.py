"""A single run composes its config once.

Hydra composes the config of ``python app.py ...`` twice: once in
``Hydra.get_mode``, only to read ``hydra.mode`` (a config may turn itself into
a multirun), and again in ``Hydra.run`` to run it. For tipi's tree that is
about 0.1 s of the time from launch to the first training step
(docs/performance.md). The seam (:func:`tipi._hydra.install` with ``compose_once=True``, as
``python -m tipi`` does when the command line is not a multirun) makes the first composition the one the run
uses:

- ``get_mode`` composes the config as the run will (``RunMode.RUN``, sweep
  overrides validated), keeps it and returns its ``hydra.mode``;
- the run's composition of the same config name and overrides gets the kept
  config instead of composing again; Hydra then configures logging from it
  as usual.

Where the two compositions can differ, Hydra's own ``get_mode`` runs as
before: a sweep override on the command line (``seed=1,2`` with a config that
sets ``hydra.mode: MULTIRUN``), or a config group left ``???`` (which a
multirun composition skips). A config that fails to compose is reported by
the run's composition, as before. Hydra 1.3 has no public hook for either
step; both wrappers call Hydra's own functions (the seam checks the Hydra version).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_RUN_MODE = "hydra.mode=RUN"  # what Hydra adds to a single run's overrides when the config leaves the mode unset


class _Kept:
    """The one composition a single run keeps between ``get_mode`` and ``run``."""

    key: tuple[str | None, tuple[str, ...]] | None = None
    cfg: Any = None

    @classmethod
    def take(cls, config_name: str | None, overrides: list[str]) -> Any:
        """The kept config for this config name and these overrides (once), or None.

        Hydra runs a config whose ``hydra.mode`` is unset with one more
        override, ``hydra.mode=RUN``: the kept config gets it as that
        composition would (the value, and the line in ``hydra.overrides.hydra``).
        """
        if cls.key is None or cls.key[0] != config_name:
            return None
        kept = cls.key[1]
        if tuple(overrides[: len(kept)]) != kept or tuple(overrides[len(kept) :]) not in ((), (_RUN_MODE,)):
            return None
        cfg, cls.key, cls.cfg = cls.cfg, None, None
        if len(overrides) > len(kept):
            from hydra.types import RunMode

            cfg.hydra.mode = RunMode.RUN
            cfg.hydra.overrides.hydra.append(_RUN_MODE)
        return cfg


def _has_sweep(overrides: list[str]) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return any(o.is_sweep_override() for o in OverridesParser.create().parse_overrides(overrides))
    except Exception:  # noqa: BLE001 - unparsable: Hydra's own get_mode and run report it as before
        return True


def wrap_get_mode(get_mode: Callable[..., Any]) -> Callable[..., Any]:
    """``Hydra.get_mode``, keeping the composition for the run when it is the run's own."""
    from hydra.errors import ConfigCompositionException
    from hydra.types import RunMode

    def get_mode_composing_once(self: Any, config_name: str | None, overrides: list[str]) -> Any:
        _Kept.key = _Kept.cfg = None
        if _has_sweep(overrides):
            return get_mode(self, config_name, overrides)
        try:
            cfg = self.compose_config(config_name, overrides, run_mode=RunMode.RUN, with_log_configuration=False)
        except ConfigCompositionException as exc:
            if str(exc).startswith("You must specify"):  # a `???` group: a multirun composition skips it
                return get_mode(self, config_name, overrides)
            return None  # as Hydra's get_mode: the run's own composition reports it
        except Exception:  # noqa: BLE001 - as Hydra's get_mode: the run's own composition reports it
            return None
        if cfg.hydra.mode != RunMode.MULTIRUN:  # a config that makes itself a multirun composes its jobs anew
            _Kept.key, _Kept.cfg = (config_name, tuple(overrides)), cfg
        return cfg.hydra.mode

    return get_mode_composing_once


def wrap_load_configuration(load_configuration: Callable[..., Any]) -> Callable[..., Any]:
    """``ConfigLoaderImpl.load_configuration``: Hydra's composition, or the one ``get_mode`` kept for this run."""
    from hydra.types import RunMode

    def load_kept_configuration(
        self: Any,
        config_name: str | None,
        overrides: list[str],
        run_mode: Any,
        from_shell: bool = True,
        validate_sweep_overrides: bool = True,
    ) -> Any:
        if run_mode == RunMode.RUN and validate_sweep_overrides:
            kept = _Kept.take(config_name, overrides)
            if kept is not None:
                return kept
        return load_configuration(self, config_name, overrides, run_mode, from_shell, validate_sweep_overrides)

    return load_kept_configuration


def forget() -> None:
    """Drop a kept composition (the patches are being removed)."""
    _Kept.key = _Kept.cfg = None
