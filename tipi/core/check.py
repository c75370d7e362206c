"""What a target may check about its own parameters before anything runs.

The builder is the one gate: it imports every ``_target_``, binds its
parameters and then calls the target's ``check_config(params, check)`` class
method, if it has one, with a :class:`ConfigCheck`. Ranges, choices that
depend on each other, nested targets and metric names are checked there, so a
mistake in the last process is reported before the first permanence
initializes.

A mistake is reported at the key the user typed. The top-level groups are
referenced from ``permanences:`` (``permanences.data: ${data}``), so a value
found wrong at ``permanences.data.batch_size`` was typed as
``data.batch_size``, and one at ``permanences.data.seed`` (``data.seed:
${seed}``) as ``seed``: :func:`typed_key` follows such references back.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tipi.core.errors import ConfigError, did_you_mean

# A value that is one plain, absolute reference and nothing else: "${data}", "${data.num_classes}".
# Resolvers ("${oc.env:X}", "${hydra:...}") and relative references ("${.x}") are left alone.
_REFERENCE = re.compile(r"\$\{([A-Za-z_][\w\-]*(?:\.[A-Za-z_][\w\-]*)*)\}")


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


def typed_key(raw: Mapping[str, Any], key: str) -> str:
    """The key a user types to change the value at ``key``: references (``${data}``) followed back.

    ``raw`` is the config as plain containers with its interpolations unresolved
    (``OmegaConf.to_container(cfg, resolve=False)``). ``permanences.data.seed``
    with ``permanences.data: ${data}`` and ``data.seed: ${seed}`` is ``seed``;
    a key that is set in place, that ``raw`` does not hold, or that refers to a key
    ``raw`` does not hold (``${data.nope}``), is returned as it is.
    """
    seen = {key}
    while True:
        parts = key.split(".")
        node: Any = raw
        for i, part in enumerate(parts):
            if not isinstance(node, Mapping) or part not in node:
                return key
            node = node[part]
            reference = _REFERENCE.fullmatch(node) if isinstance(node, str) else None
            if reference is not None:
                if not _holds(raw, reference.group(1)):  # a reference to nothing: the holder is what to change
                    return key
                key = ".".join([reference.group(1), *parts[i + 1 :]])
                break
        else:
            return key
        if key in seen:  # a reference cycle: the config's own problem, reported elsewhere
            return key
        seen.add(key)


def _holds(raw: Mapping[str, Any], key: str) -> bool:
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _same(key: str) -> str:
    return key


@dataclass(frozen=True)
class Checked:
    """A permanence as the builder checked it: its imported target and its own parameters (resolved)."""

    target: Any
    params: Mapping[str, Any]


@dataclass(frozen=True)
class ConfigCheck:
    """The context of one target's ``check_config``.

    ``key`` is the target's config key (``processes.train``); ``metrics`` every
    metric name the pipeline's processes declare, or None when some process
    declares none (then no metric name can be refused). ``permanences``: every
    permanence of the pipeline, checked (a permanence's check may depend on
    another's parameters: the network's on the data's image size). ``typed``
    maps a config key to the key the user typed (:func:`typed_key`).
    """

    key: str
    metrics: tuple[str, ...] | None = None
    permanences: Mapping[str, Checked] = field(default_factory=dict)
    typed: Callable[[str], str] = _same

    def at(self, name: str) -> str:
        """The key a user types for parameter ``name`` (``data.batch_size``, not ``permanences.data.batch_size``)."""
        return self.typed(f"{self.key}.{name}")

    def find(self, kind: type) -> tuple[str, Checked] | None:
        """The first permanence whose target is ``kind`` or a subclass of it, with its name; None if none is."""
        for name, checked in self.permanences.items():
            if isinstance(checked.target, type) and issubclass(checked.target, kind):
                return name, checked
        return None

    def require(self, ok: bool, name: str, message: str, hint: str | None = None) -> None:
        """Raise a ``ConfigError`` at parameter ``name`` unless ``ok``."""
        if not ok:
            raise ConfigError(message, key=self.at(name), hint=hint)

    def require_metric(self, name: str, metric: str, declared: Iterable[str] | None = None) -> None:
        """Refuse ``metric`` (the value of parameter ``name``) unless ``declared`` (default: the pipeline's) has it."""
        pool = tuple(declared) if declared is not None else self.metrics
        if pool is not None and not matches(metric, pool):
            raise unknown_metric(self.at(name), metric, pool)
