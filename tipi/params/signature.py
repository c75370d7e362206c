"""What a ``_target_`` accepts: its config parameters with their types, defaults and its first doc line.

Read as the builder reads it (``__tipi_signature__`` of a ``@pipeline_process``
function, else ``inspect.signature``), so the config keys, the help and the
builder's check agree. A plain class or function is read from its source
without importing its module (:mod:`tipi.params.source`); anything else
imports the module and nothing more (tipi's own processes and permanences
import torch only when they run).
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any

from tipi.params.source import read_from_source
from tipi.params.target import INJECTED, Param, TargetInfo, first_line

__all__ = ["read_target"]


def _first_doc_line(obj: Any) -> str:
    # A class's own docstring: inspect.getdoc would give a base class's
    return first_line(obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None))


def _load(path: str, kind: str) -> tuple[Any, Any]:
    """``(object whose signature counts, object whose docstring counts)``; raises what the builder would."""
    from tipi.core.builder import as_process_class, locate

    obj = locate(path, "_target_")
    if kind != "process":
        return obj, obj
    cls = as_process_class(obj, "_target_")
    return cls, getattr(cls, "__tipi_function__", cls)


@functools.lru_cache(maxsize=512)
def read_target(path: str, kind: str) -> TargetInfo | None:
    """The config parameters of the target at ``path``; None when it cannot be read.

    From its source when that is plain enough and its module is not imported
    yet (:mod:`tipi.params.source`), else from the imported target. None (it
    does not import, is not a process, has no signature) leaves the node as
    the config wrote it: the builder then reports the problem with the config
    key, before anything runs.
    """
    module = path.rpartition(".")[0]
    if module and module not in sys.modules:
        info = read_from_source(path, kind)
        if info is not None:
            return info
    return read_imported(path, kind)


def read_imported(path: str, kind: str) -> TargetInfo | None:
    """:func:`read_target` by importing the target, as the builder does."""
    try:
        obj, documented = _load(path, kind)
        sig = getattr(obj, "__tipi_signature__", None) or inspect.signature(obj)
    except Exception:  # noqa: BLE001 - any failure is the builder's to report, not ours
        return None
    params: list[Param] = []
    accepts_any = False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            accepts_any = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in INJECTED.get(kind, ()):
            params.append(Param(p.name, p.default, p.annotation))
    return TargetInfo(path, kind, tuple(params), accepts_any, _first_doc_line(documented))
