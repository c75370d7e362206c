"""Naming the key to blame when the probe finds a value the network cannot be built or run with.

A constructor's error rarely names a config key: torch's "Invalid learning
rate: -1" names neither ``optimizer.lr`` nor the range. The probe
(:mod:`tipi.permanences.probe`) reports each mistake at the key the user
typed: the value outside the ranges ``torch.optim`` accepts; the parameter a
constructor's message names, else the one whose default makes it build; for a
batch that does not pass, the one value whose default lets it pass. A
:class:`Node` and a :class:`Batch` carry the keys as the user types them.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tipi.core.errors import ConfigError
from tipi.permanences.probe_build import first_line, passes, quiet

_HYDRA_KEYS = frozenset({"_target_", "_partial_", "_convert_", "_recursive_", "_args_"})


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _at_least(low: float) -> Callable[[Any], bool]:
    return lambda value: _number(value) and value >= low


def _whole_at_least(low: int) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= low


def _betas(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(b) and 0 <= b < 1 for b in value)


# What torch.optim and torch.optim.lr_scheduler accept, by parameter name (torch checks some of
# these itself, with messages that name neither the key nor the range, and others not at all).
TORCH_OPTIM_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "lr": (_at_least(0), "a number >= 0 (e.g. 1e-3)"),
    "weight_decay": (_at_least(0), "a number >= 0"),
    "momentum": (_at_least(0), "a number >= 0"),
    "dampening": (_number, "a number"),
    "eps": (_at_least(0), "a number >= 0"),
    "alpha": (_at_least(0), "a number >= 0"),
    "betas": (_betas, "two numbers in [0, 1), e.g. [0.9, 0.999]"),
    "T_max": (_whole_at_least(1), "a whole number >= 1 (epochs)"),
    "eta_min": (_at_least(0), "a number >= 0"),
    "step_size": (_whole_at_least(1), "a whole number >= 1 (epochs)"),
    "gamma": (_at_least(0), "a number >= 0"),
}


@dataclass(frozen=True)
class Node:
    """A nested target node of the network (``model``, ``optimizer``, ``scheduler``) and how keys below it are typed.

    ``path`` is where the engine reaches it (``permanences.network.model``);
    ``typed`` maps that to the key the user types (``model``).
    """

    cfg: dict[str, Any]
    path: str
    typed: Callable[[str], str]

    @property
    def key(self) -> str:
        """The node's own key, as the user types it."""
        return self.typed(self.path)

    def at(self, name: str) -> str:
        """The key the user types for parameter ``name`` (``data.num_classes`` for ``model.num_classes``)."""
        return self.typed(f"{self.path}.{name}")

    @property
    def target(self) -> str:
        """The ``_target_`` path."""
        return str(self.cfg.get("_target_"))

    @property
    def own(self) -> dict[str, Any]:
        """The node's parameters (Hydra's keys left out)."""
        return {k: v for k, v in self.cfg.items() if k not in _HYDRA_KEYS}


@dataclass(frozen=True)
class Batch:
    """What one batch of the data looks like, and the keys that set it."""

    shape: tuple[int, ...]  # one sample: (channels, height, width)
    num_classes: int
    keys: dict[str, Any]  # the data's shape keys as the user types them, with their values
    classes_key: str
    per_pixel: bool = True  # targets are masks of the images' size
    # the sample's shape with one of the data's shape keys at its default (key as typed -> shape)
    at_default: dict[str, tuple[int, ...]] = field(default_factory=dict)


def check_torch_ranges(node: Node) -> None:
    """Refuse a ``torch.optim`` optimizer's or scheduler's value outside what torch accepts, naming the range."""
    if not node.target.startswith("torch.optim"):
        return
    for name, value in node.own.items():
        known = TORCH_OPTIM_RANGES.get(name)
        if known is not None and not known[0](value):
            shown = f"{type(value).__name__} {value!r}" if not _number(value) else repr(value)
            raise ConfigError(f"must be {known[1]}, got {shown}", key=node.at(name))


def _defaults(node: Node) -> dict[str, Any]:
    """The node target's signature defaults (its first parameter left out for a ``_partial_`` one)."""
    from tipi.core.builder import locate

    try:
        target = locate(node.target, f"{node.path}._target_")
        params = list(inspect.signature(target).parameters.values())
    except (ConfigError, TypeError, ValueError):
        return {}
    if node.cfg.get("_partial_"):
        params = params[1:]
    return {p.name: p.default for p in params if p.default is not p.empty}


def names_in(message: str, names: list[str]) -> list[str]:
    """The ``names`` that ``message`` mentions as words."""
    return [n for n in names if re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", message)]


def blame(node: Node, build: Callable[[dict[str, Any]], Any], error: BaseException) -> str | None:
    """The parameter ``build`` refused: the one the error names, else the one whose default makes it build."""
    own = list(node.own)
    named = names_in(str(error), own)
    if len(named) == 1:
        return named[0]
    defaults = _defaults(node)
    for name in [*named, *(n for n in own if n not in named)]:
        if name not in defaults or node.cfg[name] == defaults[name]:
            continue
        try:
            with quiet():
                build({**node.cfg, name: defaults[name]})
        except Exception:  # noqa: BLE001 - still refused: this parameter is not the one
            continue
        return name
    return None


def refused(node: Node, name: str, error: BaseException) -> ConfigError:
    """``<target> refuses <name>=<value>: <its message>``, with the valid range or the default as the hint."""
    value = node.cfg[name]
    known = TORCH_OPTIM_RANGES.get(name) if node.target.startswith("torch.optim") else None
    defaults = _defaults(node)
    if known is not None:
        hint: str | None = f"Valid: {known[1]}."
    elif name in defaults:
        hint = f"Valid: what {node.target} accepts; its default is {defaults[name]!r}."
    else:
        hint = None
    return ConfigError(f"{node.target} refuses {name}={value!r}: {first_line(error)}", key=node.at(name), hint=hint)


def blame_shape(node: Node, batch: Batch, error: BaseException) -> str:
    """The key to name for a batch that does not pass: the one value whose default lets it pass, else the one
    the error names, else the model's node."""
    defaults = _defaults(node)
    for name, value in node.own.items():
        if name in defaults and defaults[name] != value and passes({**node.cfg, name: defaults[name]}, batch.shape):
            return node.at(name)
    for key, shape in batch.at_default.items():
        if passes(node.cfg, shape):
            return key
    named = names_in(str(error), list(node.own))
    return node.at(named[0]) if len(named) == 1 else node.key


def involved(node: Node, batch: Batch) -> str:
    """``data.image_size=32, model.in_channels=3, model.depth=9, data.num_classes=4``: what sets the shapes."""
    keys = dict(batch.keys)
    for name, value in node.own.items():
        if isinstance(value, int) and not isinstance(value, bool):
            keys.setdefault(node.at(name), value)
    keys.setdefault(batch.classes_key, batch.num_classes)
    return ", ".join(f"{k}={v}" for k, v in keys.items())
