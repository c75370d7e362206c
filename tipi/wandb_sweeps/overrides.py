"""Sweep parameters -> Hydra overrides, and the guard that keeps a sweep from running code.

A sweep parameter's name is a Hydra override key (``optimizer.lr``, a config
group such as ``model``, ``+new.key``); its value becomes the override's
value. A sweep can come from a WandB server (``sweep.id``), so what it may set
is limited: nothing that picks code (``_target_`` and the other ``_x_`` keys
Hydra instantiates with), nothing under ``hydra``, not the sweep itself nor
``resume`` -- unless the local sweep config lists the key in ``allow``.
Every override is parsed back with Hydra's own parser before it is used.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tipi.core.errors import ConfigError, SweepError

if TYPE_CHECKING:
    from omegaconf import DictConfig

# An override key: an optional "+" / "++", then dotted (or, for config groups, slashed) names.
_KEY = re.compile(r"^(\+\+|\+)?([A-Za-z_][\w\-]*(?:[./][A-Za-z_0-9][\w\-]*)*)$")
_SPECIAL = re.compile(r"^_.+_$")  # _target_, _args_, _partial_, _recursive_, _convert_, ...
_PLAIN_DICT_KEY = re.compile(r"^[A-Za-z_][\w\-]*$")
# Strings that read as themselves unquoted (config-group options, names); Hydra's keywords excluded.
_PLAIN_STRING = re.compile(r"^[A-Za-z_][\w\-/.]*$")
_CLIMBS = re.compile(r"^/|(^|/)\.\.(/|$)")
_KEYWORDS = frozenset({"null", "true", "false", "inf", "nan"})


def protection(key: str) -> str | None:
    """Why a sweep may not set ``key`` on its own, or None when it may."""
    parts = [p for p in re.split(r"[./]", key) if p]
    if any(_SPECIAL.match(p) for p in parts):
        special = next(p for p in parts if _SPECIAL.match(p))
        return f"'{special}' chooses the code that runs"
    if parts and parts[0] == "hydra":
        return "Hydra's own settings (launchers, callbacks) can run code"
    if parts and parts[0] in ("sweep", "resume"):
        return f"'{parts[0]}' is not a parameter of a run"
    return None


def is_allowed(key: str, allow: Iterable[str]) -> bool:
    """Whether a pattern in ``allow`` (``fnmatch``-style, e.g. ``model._target_``) names ``key``."""
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in allow)


def check_key(name: str, allow: Iterable[str] = (), where: str = "sweep.parameters") -> str:
    """Check a parameter name is a plain override key the sweep may set; return the bare key."""
    match = _KEY.match(str(name))
    if match is None:
        raise SweepError(
            f"'{name}' is not a Hydra override key",
            key=f"{where}.{name}",
            hint="Use dotted config keys (optimizer.lr), a config group (model), "
            "or +key for a key the config does not have.",
        )
    key = match.group(2)
    reason = protection(key)
    if reason is not None and not is_allowed(key, allow):
        raise SweepError(
            f"a sweep may not set '{key}': {reason}",
            key=f"{where}.{name}",
            hint=f"If this sweep is yours and trusted, list it in sweep.allow: ['{key}'].",
        )
    return key


def check_value(key: str, value: Any, allow: Iterable[str] = (), where: str = "sweep.parameters") -> None:
    """Refuse values that would set protected keys (``{_target_: ...}``) or interpolate (``${...}``)."""
    if isinstance(value, Mapping):
        for sub, item in value.items():
            sub_key = check_key(f"{key}.{sub}", allow, where)
            check_value(sub_key, item, allow, where)
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_value(key, item, allow, where)
    elif isinstance(value, str) and not is_allowed(key, allow):
        if "${" in value:
            # ``${oc.env:...}`` would copy a secret of this machine into the run's config (and to WandB).
            raise SweepError(
                f"value {value!r} is an interpolation, which a sweep may not send",
                key=f"{where}.{key}",
                hint=f"List it in sweep.allow: ['{key}'] if it is yours.",
            )
        if _CLIMBS.search(value):
            # As a config-group choice (``model=../x``) it would load a config file from outside the group.
            raise SweepError(
                f"value {value!r} is a path that leaves its config group",
                key=f"{where}.{key}",
                hint=f"List it in sweep.allow: ['{key}'] if it is yours.",
            )


def plain(value: Any) -> Any:
    """NumPy scalars (what the sweep engine proposes) as Python numbers; containers recursively."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (str, bytes)):
        return item()
    return value


def _quote(text: str) -> str:
    # Hydra's quoted strings: a backslash escapes a quote; backslashes before a
    # quote (or at the end) are doubled. The parse-back check confirms it.
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f"'{escaped}'"


def format_value(value: Any) -> str:
    """``value`` in Hydra's override grammar; any string but a plain name is quoted, so it cannot inject syntax."""
    value = plain(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # 0.001, 1e-05, inf, nan: all parse back as floats
    if isinstance(value, str):
        if _PLAIN_STRING.match(value) and value.lower() not in _KEYWORDS:
            return value  # ``model=unet``, as a person would write it
        return _quote(value)
    if isinstance(value, list):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            if not _PLAIN_DICT_KEY.match(k):
                raise SweepError(f"mapping key {k!r} cannot be written as an override", key="sweep.parameters")
            items.append(f"{k}:{format_value(v)}")
        return "{" + ",".join(items) + "}"
    raise SweepError(f"cannot turn a {type(value).__name__} ({value!r}) into an override", key="sweep.parameters")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b and type(a) is type(b)


def to_override(name: str, value: Any, allow: Iterable[str] = ()) -> str:
    """One checked Hydra override ``name=value``; parsed back to prove it sets exactly that."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    key = check_key(name, allow)
    value = plain(value)
    check_value(key, value, allow)
    text = f"{name}={format_value(value)}"
    try:
        parsed = OverridesParser.create().parse_override(text)
    except HydraException as exc:
        raise SweepError(f"cannot express {value!r} as an override: {exc}", key=f"sweep.parameters.{name}") from exc
    if (
        parsed.key_or_group != key
        or parsed.package is not None
        or parsed.is_sweep_override()
        or not _same(parsed.value(), value)
    ):
        raise SweepError(f"the override {text!r} would not set {key} to {value!r}", key=f"sweep.parameters.{name}")
    return text


def flatten(params: Mapping[str, Any], nested: Mapping[str, Any]) -> dict[str, Any]:
    """A run's parameter values by override key; WandB's nested ``parameters:`` become dotted keys.

    ``nested`` is the sweep's ``parameters`` section: a parameter written as
    ``optimizer: {parameters: {lr: ...}}`` arrives as ``optimizer: {lr: 0.01}``
    and is set as ``optimizer.lr=0.01``; any other mapping value is one value.
    """
    out: dict[str, Any] = {}
    for name, value in params.items():
        spec = nested.get(name)
        if isinstance(spec, Mapping) and isinstance(spec.get("parameters"), Mapping) and isinstance(value, Mapping):
            for sub, sub_value in flatten(value, spec["parameters"]).items():
                out[f"{name}.{sub}"] = sub_value
        else:
            out[name] = value
    return out


def param_overrides(params: Mapping[str, Any], nested: Mapping[str, Any], allow: Sequence[str] = ()) -> list[str]:
    """Checked overrides for one sweep run's parameters, in the sweep's order."""
    return [to_override(name, value, allow) for name, value in flatten(params, nested).items()]


def check_against(names: Iterable[str], cfg: DictConfig) -> None:
    """Refuse a parameter name that names a process, permanence or parameter ``cfg`` does not have.

    Each run's composition would refuse it (:mod:`tipi._hydra.params_hook`); checking the
    sweep's own config first stops the sweep before its first run. A ``+name``
    adds a key on purpose and is left alone.
    """
    from tipi._hydra import check_param_key

    for name in names:
        if name.startswith("+"):
            continue
        try:
            check_param_key(name, cfg)
        except ConfigError as exc:
            raise SweepError(exc.message, key=f"sweep.parameters.{name}", hint=exc.hint) from None


def check_parameters(nested: Mapping[str, Any], allow: Sequence[str] = (), prefix: str = "") -> list[str]:
    """Check every parameter name (and literal value) of a sweep config before anything runs."""
    names = []
    for name, spec in nested.items():
        full = f"{prefix}{name}"
        if isinstance(spec, Mapping) and isinstance(spec.get("parameters"), Mapping):
            names += check_parameters(spec["parameters"], allow, prefix=f"{full}.")
            continue
        key = check_key(full, allow)
        if isinstance(spec, Mapping):
            for field in ("value", "values"):
                if field in spec:
                    check_value(key, spec[field], allow)
        names.append(full)
    return names
