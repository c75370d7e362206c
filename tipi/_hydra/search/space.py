"""A search space in Hydra's Optuna-sweeper syntax, as Optuna distributions, and a trial's values as overrides.

``optimizer.lr: tag(log, interval(1e-4, 3e-2))`` is a float on a log scale,
``interval(a, b)`` a float (an int when both ends are ints), ``range(a, b[,
step])`` an int with a step, ``b`` excluded as in Hydra's own ``range`` (a
float range includes it), as hydra-optuna-sweeper had them; ``choice(a, b,
...)`` categorical, also for a
config group (``model: choice(unet, unet_small)``); a plain value is fixed for
every trial. The strings are parsed by Hydra's own override parser, so what a
Hydra command line or an ``hparams_search`` file accepts is accepted here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tipi.core.errors import ConfigError

FORBIDDEN = ("hydra.", "_target_")


def parse_space(params: Mapping[str, Any], key_prefix: str = "search.params") -> tuple[dict[str, Any], list[str]]:
    """``(distributions by key, fixed overrides)`` of a space; a ``ConfigError`` naming the entry for bad input."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    space: dict[str, Any] = {}
    fixed: list[str] = []
    for key, value in params.items():
        key = str(key)
        where = f"{key_prefix}.{key}"
        if key.startswith(FORBIDDEN) or key.endswith("._target_") or "._target_." in key:
            raise ConfigError(
                f"'{key}' cannot be searched: a trial's {'Hydra settings' if key.startswith('hydra.') else 'class'} "
                "is fixed by its config",
                key=where,
                hint="Search the parameters of the class instead (optimizer.lr, model.base_channels), "
                "or a config group (model: choice(unet, unet_small)).",
            )
        text = value if isinstance(value, str) else _plain(value)
        try:
            override = parser.parse_override(f"{key}={text}")
        except OverrideParseException as exc:
            raise ConfigError(
                f"'{text}' is not a search space entry: {exc}",
                key=where,
                hint="e.g. interval(1e-4, 1e-2), tag(log, interval(1e-4, 1e-2)), range(1, 8), choice(a, b)",
            ) from None
        if override.is_sweep_override():
            space[key] = distribution(override, where)
        else:
            fixed.append(f"{key}={override.get_value_element_as_str()}")
    return space, fixed


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def distribution(override: Any, where: str) -> Any:
    """The Optuna distribution of one parsed sweep override (as hydra-optuna-sweeper made it)."""
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep, Transformer
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    value = override.value()
    if isinstance(value, ChoiceSweep):
        return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if isinstance(value, RangeSweep):
        if value.shuffle:
            return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
        start, stop, step = value.start or 0, value.stop or 0, value.step or 1
        if any(isinstance(x, float) for x in (start, stop, step)):
            return FloatDistribution(float(start), float(stop), step=float(step))
        return IntDistribution(int(start), int(stop) - int(step), step=int(step))  # Hydra's range: stop excluded
    if isinstance(value, IntervalSweep):
        log = "log" in value.tags
        if log and (value.start is None or value.start <= 0):
            raise ConfigError(f"a log scale needs a start above 0, got {value.start}", key=where)
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start or 0.0), float(value.end or 0.0), log=log)
    raise ConfigError(
        f"{type(value).__name__} is not a search space entry",
        key=where,
        hint="Use interval(...), range(...) or choice(...).",
    )


def trial_overrides(params: Mapping[str, Any]) -> list[str]:
    """The overrides that give a trial its sampled values (strings quoted where Hydra needs it)."""
    return [f"{key}={_override_value(value)}" for key, value in params.items()]


def _override_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)) or value is None:
        return "null" if value is None else repr(value)
    text = str(value)
    if text and all(c.isalnum() or c in "_-./:" for c in text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
