"""A target's config parameters bound to its signature, with plausible types.

The builder's check of every ``_target_`` node before anything is built: a
parameter the signature does not name is refused (``data.batchsize``), a
required one that is not set is asked for, and a value whose type cannot be
what the annotation says (``data.batch_size=abc`` for an ``int``, a choice
outside a ``Literal`` or an ``Enum``) is refused at the key the user typed.
Only simple annotations are checked; anything else passes.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from tipi.core.errors import ConfigError


def _signature(target: Any) -> inspect.Signature:
    sig = getattr(target, "__tipi_signature__", None)
    return sig if sig is not None else inspect.signature(target)


def _type_hints(target: Any) -> dict[str, Any]:
    fn = target
    if isinstance(target, type):  # the __init__ the signature comes from: the class's own or an inherited one
        fn = next((vars(k)["__init__"] for k in target.__mro__ if "__init__" in vars(k)), target)
    try:
        return typing.get_type_hints(getattr(target, "__tipi_function__", fn))
    except Exception:  # noqa: BLE001 - unresolvable hints just skip the type check
        return {}


def _type_ok(value: Any, annotation: Any) -> bool:
    """A shallow check of config values against simple annotations; unknown shapes pass."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_ok(value, typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return any(value in (member.value, member.name) for member in annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation in (bool, str):
        return isinstance(value, annotation)
    if origin in (list, tuple, typing.Sequence) or annotation in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin in (dict, typing.Mapping) or annotation is dict:
        return isinstance(value, dict)
    return True


def _same(key: str) -> str:
    return key


def check_params(
    target: Any,
    params: Mapping[str, Any],
    key: str,
    *,
    injected: tuple[str, ...] = (),
    typed: Callable[[str], str] = _same,
) -> None:
    """Check ``params`` bind to ``target``'s signature with plausible types.

    ``injected`` names parameters tipi passes itself (``controller``); ``typed``
    maps a parameter's key to the one the user typed (:func:`tipi.core.check.typed_key`).
    """
    sig = _signature(target)
    accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    named = {
        n: p
        for n, p in sig.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in injected
    }
    for name in params:
        if name not in named and not accepts_kwargs:
            raise ConfigError.unknown(typed(f"{key}.{name}"), name, named, "parameter")
    for name, param in named.items():
        if param.default is param.empty and name not in params:
            where = typed(f"{key}.{name}")
            raise ConfigError(f"missing required parameter '{name}'", key=where, hint=f"Set it with +{where}=...")
    hints = _type_hints(target)
    for name, value in params.items():
        if isinstance(value, Mapping) and "_target_" in value:
            continue  # a nested object: checked when it is instantiated
        annotation = hints.get(name, named[name].annotation if name in named else Any)
        if not _type_ok(value, annotation):
            raise _wrong_type(typed(f"{key}.{name}"), value, annotation)


def _choices(annotation: Any) -> list[str] | None:
    """The values a ``Literal`` (or an ``Enum``, or an optional one) allows, as strings; None otherwise."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(m.value) for m in annotation]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _choices(arg)
            if found is not None:
                return found
    return None


def _wrong_type(key: str, value: Any, annotation: Any) -> ConfigError:
    choices = _choices(annotation)
    if choices is not None:
        return ConfigError.unknown(key, str(value), choices, "choice")
    shown = getattr(annotation, "__name__", str(annotation))
    return ConfigError(f"expected {shown}, got {type(value).__name__} {value!r}", key=key)
