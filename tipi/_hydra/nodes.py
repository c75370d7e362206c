"""The ``_target_`` nodes of a composed config's pipeline, and the signatures of their targets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tipi.params.signature import read_target
from tipi.params.target import TargetInfo

__all__ = ["SECTIONS", "TargetNode", "target_nodes", "target_of"]

SECTIONS = {"processes": "process", "permanences": "permanence"}
_REFERENCE = re.compile(r"^\$\{([A-Za-z_][\w\-]*(?:\.[A-Za-z_][\w\-]*)*)\}$")  # permanences.data: ${data}


@dataclass
class TargetNode:
    """A ``_target_`` node of the pipeline and where overrides reach it."""

    key: str  # the node's own key, which overrides set: processes.train, data
    listed_as: str  # where the pipeline lists it: processes.train, permanences.data
    node: DictConfig
    info: TargetInfo | None  # None: its target could not be read


def target_of(node: DictConfig) -> str | None:
    """The node's ``_target_``, or None when it has none that resolves to a string."""
    try:
        target = node.get("_target_")
    except OmegaConfBaseException:
        return None  # an interpolation that does not resolve: the builder says so
    return target if isinstance(target, str) else None


def _resolve_reference(cfg: DictConfig, child: Any) -> tuple[str, Any] | None:
    """``(key, node)`` of a ``${key}`` reference (``permanences.data: ${data}``), else None."""
    raw = child._value() if hasattr(child, "_value") else None
    match = _REFERENCE.match(raw) if isinstance(raw, str) else None
    if match is None:
        return None
    try:
        return match.group(1), OmegaConf.select(cfg, match.group(1), throw_on_missing=False)
    except OmegaConfBaseException:
        return None


def target_nodes(cfg: DictConfig, targets: dict[str, str] | None = None) -> Iterator[TargetNode]:
    """Every ``_target_`` node under ``processes`` and ``permanences``, in config order.

    ``targets`` maps a node key to a ``_target_`` an override is about to set.
    """
    targets = targets or {}
    for section, kind in SECTIONS.items():
        parent = cfg._get_node(section) if section in cfg else None
        if not isinstance(parent, DictConfig) or parent._is_none() or parent._is_missing():
            continue
        for name in [str(k) for k in parent]:
            listed_as = f"{section}.{name}"
            child = parent._get_node(name)
            key, node = listed_as, child
            reference = _resolve_reference(cfg, child)
            if reference is not None:
                key, node = reference
            if not isinstance(node, DictConfig) or node._is_none() or node._is_missing():
                continue
            target = targets.get(key) or targets.get(listed_as) or target_of(node)
            if target is None:
                continue
            yield TargetNode(key, listed_as, node, read_target(target, kind))
