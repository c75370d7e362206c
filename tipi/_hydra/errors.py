"""Mistakes Hydra catches itself, told the way tipi tells its own.

``model=unett``, a group that does not exist (``distributd=ddp``) or a key that
is not in the config (``optimizer.lrr=0.1``) fail while Hydra composes the
config, before tipi runs. Hydra reports them from ``run_and_report`` with its
config search path and a hint to set ``HYDRA_FULL_ERROR``. The seam wraps
that one function (:func:`wrap_run_and_report`) so such an error becomes a
``ConfigError``: one short message naming the key, the valid options and a "did you mean". Every other
error, and every error when ``TIPI_TRACEBACK=1`` / ``HYDRA_FULL_ERROR=1`` is
set, is left to Hydra as before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from tipi.core.errors import ConfigError, TipiError
from tipi.core.report import full_traceback_requested, report_error


def _groups(prefix: str = "") -> list[str]:
    """The config groups (under ``prefix``) Hydra can see, or [] when it cannot say."""
    try:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.object_type import ObjectType

        loader = GlobalHydra.instance().config_loader()
        return list(loader.get_group_options(prefix, results_filter=ObjectType.GROUP))
    except Exception:  # noqa: BLE001 - a hint only; the error itself is still reported
        return []


def _options(group: str) -> list[str]:
    """The options of config group ``group``, or [] when there is no such group (or Hydra cannot say)."""
    try:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.object_type import ObjectType

        loader = GlobalHydra.instance().config_loader()
        return list(loader.get_group_options(group, results_filter=ObjectType.CONFIG))
    except Exception:  # noqa: BLE001 - a hint only; the error itself is still reported
        return []


def _missing_config(exc: Any) -> ConfigError | None:
    missing = getattr(exc, "missing_cfg_file", None)
    if not missing or "/" not in str(missing):
        return None
    group, _, option = str(missing).rpartition("/")
    # An option inside a list (logger=[wandb,tensorbord]) comes without Hydra's list of options.
    options = getattr(exc, "options", None) or _options(group)
    if options:
        return ConfigError.unknown(group, option, options, "option")
    groups = [g for g in _groups() if g != "hydra"]
    return ConfigError.unknown(group, group, groups, "config group")


def _not_in_config(exc: BaseException) -> ConfigError | None:
    cause = exc.__cause__
    key = getattr(cause, "full_key", None)
    parent = getattr(cause, "parent_node", None)
    if not key or parent is None or not hasattr(parent, "keys"):
        return None
    name = str(key).rsplit(".", 1)[-1]
    valid = [str(k) for k in parent if k != "hydra"]
    what = "key"
    if "." not in str(key):  # a top-level key: a group selection is as likely as a key
        valid += [g for g in _groups() if g != "hydra" and g not in valid]
        what = "key or config group"
    error = ConfigError.unknown(str(key), name, valid, what)
    error.hint = " ".join(filter(None, [error.hint, f"To add a new key on purpose: +{key}=..."]))
    return error


def _bad_yaml(exc: BaseException) -> ConfigError | None:
    """A YAML file of the config tree (a user's ``--config-dir``) that does not parse: its file, line and column."""
    import yaml

    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:  # Hydra may wrap the parser's error
        seen.add(id(error))
        if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
            mark = error.problem_mark
            tab = "'\\t'" in str(error.problem) or "\t" in str(error.problem)  # PyYAML quotes it: '\t'
            return ConfigError(
                f"does not parse at line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
                + (f" ({error.context})" if error.context else ""),
                key=str(mark.name),
                hint="YAML indents with spaces, never tabs." if tab else "Check the YAML syntax at that place.",
            )
        error = error.__cause__ or error.__context__
    return None


def as_tipi_error(exc: BaseException) -> TipiError | None:
    """The ``ConfigError`` that tells ``exc`` (one of Hydra's composition errors), or None."""
    from hydra.errors import ConfigCompositionException, MissingConfigException

    if isinstance(exc, TipiError):  # raised by tipi during composition (tipi.params: an unknown parameter)
        return exc
    bad_yaml = _bad_yaml(exc)
    if bad_yaml is not None:
        return bad_yaml
    if isinstance(exc, MissingConfigException):
        return _missing_config(exc)
    if isinstance(exc, ConfigCompositionException):
        return _not_in_config(exc)
    return None


def wrap_run_and_report(original: Callable[[Callable[[], Any]], Any]) -> Callable[[Callable[[], Any]], Any]:
    """``hydra._internal.utils.run_and_report``, telling Hydra's composition errors the way tipi tells its own."""

    def run_and_report(func: Callable[[], Any]) -> Any:
        try:
            return func()
        except Exception as exc:  # noqa: BLE001 - Hydra's own run_and_report catches the same
            error: BaseException = exc
            translated = None if full_traceback_requested() else as_tipi_error(error)
            if translated is None:
                return original(lambda: _reraise(error))
            report_error(translated)
            sys.exit(1)

    return run_and_report


def _reraise(exc: BaseException) -> Any:
    raise exc
