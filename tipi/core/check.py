"""What a target may check about its own parameters before anything runs.

The builder is the one gate: it imports every ``_target_``, binds its
parameters and then calls the target's ``check_config(params, check)`` class
method, if it has one, with a :class:`ConfigCheck`. Ranges, choices that
depend on each other, nested targets and metric names are checked there, so a
mistake in the last process is reported before the first permanence
initializes.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

from tipi.core.errors import ConfigError, did_you_mean


def matches(name: str, declared: Iterable[str]) -> bool:
    """Whether metric ``name`` is one of ``declared`` (which may hold patterns such as ``val/iou/*``)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in declared)


def unknown_metric(key: str, name: str, declared: Iterable[str]) -> ConfigError:
    """A ``ConfigError`` for a metric name nothing logs, listing those that are logged."""
    valid = sorted(set(declared))
    guess = did_you_mean(name, valid)
    return ConfigError(
        f"no process of this pipeline logs a metric '{name}'. Logged: {', '.join(valid) or '(none)'}",
        key=key,
        hint=f"Did you mean '{guess}'?" if guess else None,
    )


@dataclass(frozen=True)
class ConfigCheck:
    """The context of one target's ``check_config``.

    ``key`` is the target's config key (``processes.train``); ``metrics`` every
    metric name the pipeline's processes declare, or None when some process
    declares none (then no metric name can be refused).
    """

    key: str
    metrics: tuple[str, ...] | None = None

    def at(self, name: str) -> str:
        """The full key of parameter ``name``."""
        return f"{self.key}.{name}"

    def require(self, ok: bool, name: str, message: str, hint: str | None = None) -> None:
        """Raise a ``ConfigError`` at parameter ``name`` unless ``ok``."""
        if not ok:
            raise ConfigError(message, key=self.at(name), hint=hint)

    def require_metric(self, name: str, metric: str, declared: Iterable[str] | None = None) -> None:
        """Refuse ``metric`` (the value of parameter ``name``) unless ``declared`` (default: the pipeline's) has it."""
        pool = tuple(declared) if declared is not None else self.metrics
        if pool is not None and not matches(metric, pool):
            raise unknown_metric(self.at(name), metric, pool)
