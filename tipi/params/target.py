"""A target's config parameters as data: names, defaults, annotations, its first doc line.

What :mod:`tipi.params.signature` reads (from the source or the imported
target) and what the config hook and the help use.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

__all__ = ["INJECTED", "Param", "TargetInfo", "config_default", "first_line"]

# Parameters tipi passes itself: not config keys.
INJECTED = {"process": ("controller",), "permanence": ()}
_MISSING = "???"  # Hydra's "required, set me"
_PRIMITIVES = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class Param:
    """One config parameter of a target."""

    name: str
    default: Any  # ``inspect.Parameter.empty`` when the parameter is required
    annotation: Any  # a type, a string (``from __future__ import annotations``) or ``inspect.Parameter.empty``

    @property
    def required(self) -> bool:
        """No default: the config must set it."""
        return self.default is inspect.Parameter.empty

    @property
    def type_text(self) -> str:
        """The annotation as written (``int | None``), or '' when there is none."""
        if self.annotation is inspect.Parameter.empty:
            return ""
        if isinstance(self.annotation, str):
            return self.annotation
        return inspect.formatannotation(self.annotation)


@dataclass(frozen=True)
class TargetInfo:
    """A target's config parameters, in signature order."""

    path: str
    kind: str  # "process" or "permanence"
    params: tuple[Param, ...]
    accepts_any: bool  # ``**kwargs``: any further key is the target's to judge
    doc: str  # the first line of its docstring, or ''

    def get(self, name: str) -> Param | None:
        """The parameter called ``name``, if there is one."""
        return next((p for p in self.params if p.name == name), None)

    @property
    def names(self) -> list[str]:
        """Every parameter's name, in signature order."""
        return [p.name for p in self.params]


def _fits_config(value: Any) -> bool:
    """Whether ``value`` goes into a config and comes back out as the same value of the same type."""
    if isinstance(value, str):
        # "${...}" would become an interpolation and "???" a missing value
        return "${" not in value and value != _MISSING
    if isinstance(value, _PRIMITIVES):
        return True
    if type(value) is list:
        return all(_fits_config(v) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and _fits_config(v) for k, v in value.items())
    return False  # tuples, paths, objects: filling them in would change what the target receives


def config_default(param: Param) -> tuple[bool, Any]:
    """``(True, value)`` to put into the config for ``param``; ``(False, None)`` when its default cannot be.

    A required parameter becomes ``???``, Hydra's mark for a value the user must set.
    """
    if param.required:
        return True, _MISSING
    if _fits_config(param.default):
        return True, param.default
    return False, None


def first_line(doc: str | None) -> str:
    """The first line of a docstring, cleaned; '' for none."""
    lines = inspect.cleandoc(doc).splitlines() if isinstance(doc, str) else []
    return lines[0].strip() if lines else ""
