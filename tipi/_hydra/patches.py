"""Every place tipi reaches into Hydra's, OmegaConf's or hydra-submitit-launcher's private API, in one table.

Hydra 1.3 has no public hook for four things tipi does (compose a single run
once, fill signature defaults in before the command line applies, add the
parameters to ``--help``, tell composition errors in one line), so tipi wraps
five private callables (:data:`PATCHES`). It also calls or subclasses a few
more (:data:`REACHED`). Each entry names the callable and the parameters the
wrapper forwards or the caller passes: ``tests/unit/test_hydra_seam.py``
checks every one against the installed Hydra, so an upgrade that renames or
reshapes one fails one named test, not a user's sweep.

:func:`install` puts the wrappers in place, once, after checking the Hydra
version against :data:`TESTED`; :func:`uninstall` puts Hydra's own callables
back (tests do, after each test that installs).
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tipi.core.errors import TipiError

# hydra-core releases (major, minor) whose private API the table below was checked against.
TESTED: tuple[tuple[int, int], ...] = ((1, 3),)
UNTESTED_OK = "TIPI_UNTESTED_HYDRA"  # set to 1 to run on an untested Hydra once the canaries pass


class HydraVersionError(TipiError):
    """The installed Hydra is not one tipi's patches were tested on, or a patched callable changed."""


@dataclass(frozen=True)
class PrivateCallable:
    """A private callable of a dependency that tipi wraps, calls or subclasses.

    ``where`` is ``module:Qualified.name``; ``params`` its parameter names
    (``self`` included), in order, exactly: the wrapper forwards them, or tipi's
    call passes them, so any change is one to look at.
    """

    where: str
    params: tuple[str, ...]
    why: str

    def resolve(self) -> tuple[Any, str, Any]:
        """(owner object, attribute name, current value); raises when the module or an attribute is gone."""
        module_name, _, qualname = self.where.partition(":")
        owner: Any = importlib.import_module(module_name)
        *path, name = qualname.split(".")
        for part in path:
            owner = getattr(owner, part)
        raw = inspect.getattr_static(owner, name)  # a staticmethod stays one, so it is put back as one
        return owner, name, raw

    def problem(self) -> str | None:
        """Why the installed version does not match this entry, or None when it does."""
        try:
            _, _, raw = self.resolve()
        except (ImportError, AttributeError) as exc:
            return f"{self.where} is gone ({exc})"
        func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
        try:
            names = tuple(inspect.signature(func).parameters)
        except (TypeError, ValueError) as exc:
            return f"{self.where} has no readable signature ({exc})"
        if names != self.params:
            return f"{self.where} takes ({', '.join(names)}), tipi forwards ({', '.join(self.params)})"
        return None


@dataclass(frozen=True)
class Patch(PrivateCallable):
    """A private callable tipi replaces by a wrapper that calls it: ``wrap`` is ``module:function`` in this package."""

    part: str = ""  # which switch of install() puts it in place
    wrap: str = ""

    def wrapper(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """The wrapper around ``original`` (the wrapping module is imported only now)."""
        module_name, _, func = self.wrap.partition(":")
        wrapper = getattr(importlib.import_module(module_name), func)(original)
        setattr(wrapper, _MARK, original)
        return wrapper


_MARK = "__tipi_wraps__"
_LOADER = "hydra._internal.config_loader_impl:ConfigLoaderImpl"
_HYDRA = "hydra._internal.hydra:Hydra"

PATCHES: tuple[Patch, ...] = (
    Patch(
        f"{_HYDRA}.get_mode",
        ("self", "config_name", "overrides"),
        "a single run keeps the composition get_mode makes (Hydra composes it twice)",
        part="compose_once",
        wrap="tipi._hydra.compose_once:wrap_get_mode",
    ),
    Patch(
        f"{_LOADER}.load_configuration",
        ("self", "config_name", "overrides", "run_mode", "from_shell", "validate_sweep_overrides"),
        "the run's composition takes the one get_mode kept",
        part="compose_once",
        wrap="tipi._hydra.compose_once:wrap_load_configuration",
    ),
    Patch(
        f"{_LOADER}._apply_overrides_to_config",
        ("overrides", "cfg"),
        "signature defaults become config keys before the command line applies",
        part="params",
        wrap="tipi._hydra.params_hook:wrap_apply_overrides",
    ),
    Patch(
        f"{_HYDRA}.get_help",
        ("self", "help_cfg", "cfg", "args_parser", "resolve"),
        "--help lists every process and permanence with its parameters",
        part="params",
        wrap="tipi._hydra.help:wrap_get_help",
    ),
    Patch(
        "hydra._internal.utils:run_and_report",
        ("func",),
        "Hydra's composition errors told in one line with the key and a 'did you mean'",
        part="errors",
        wrap="tipi._hydra.errors:wrap_run_and_report",
    ),
)

_SUBMITIT = "hydra_plugins.hydra_submitit_launcher.submitit_launcher:BaseSubmititLauncher"
REACHED: tuple[PrivateCallable, ...] = (
    PrivateCallable("hydra._internal.utils:get_args_parser", (), "the command line parsed as Hydra parses it"),
    PrivateCallable(
        "hydra._internal.core_plugins.basic_launcher:BasicLauncher.launch",
        ("self", "job_overrides", "initial_job_idx"),
        "launcher=local subclasses Hydra's basic launcher",
    ),
    PrivateCallable(
        f"{_LOADER}._parse_overrides_and_create_caching_repo",
        ("self", "config_name", "overrides"),
        "which overrides of a multirun choose config groups (jobs derived from a shared base)",
    ),
    PrivateCallable(
        "hydra._internal.config_loader_impl:get_overrides_dirname",
        ("overrides", "exclude_keys", "item_sep", "kv_sep"),
        "hydra.job.override_dirname of a derived job, set as Hydra sets it",
    ),
    PrivateCallable(
        f"{_SUBMITIT}.launch",
        ("self", "job_overrides", "initial_job_idx"),
        "tipi's submitit launch forks the plugin's (a lost job is a failed row)",
    ),
    PrivateCallable(
        f"{_SUBMITIT}.__call__",
        ("self", "sweep_overrides", "job_dir_key", "job_num", "job_id", "singleton_state"),
        "each job's arguments, as tipi's launch passes them",
    ),
    PrivateCallable(
        "omegaconf.dictconfig:DictConfig._get_node",
        ("self", "key", "validate_access", "validate_key", "throw_on_missing_value", "throw_on_missing_key"),
        "a child node as it is written (nothing resolved), None when absent",
    ),
    PrivateCallable("omegaconf.nodes:ValueNode._value", ("self",), "a value's text, an interpolation unresolved"),
    PrivateCallable("omegaconf.basecontainer:BaseContainer._value", ("self",), "a container's content, unresolved"),
    PrivateCallable("omegaconf.base:Node._is_none", ("self",), "a node set to null"),
    PrivateCallable("omegaconf.base:Node._is_missing", ("self",), "a node set to ???"),
    PrivateCallable("omegaconf.base:Node._get_node_flag", ("self", "flag"), "a node's own struct flag, to restore it"),
)


def _installed() -> dict[str, Patch]:
    """Patch point -> patch, for the patches in place now."""
    placed = {}
    for patch in PATCHES:
        try:
            _, _, raw = patch.resolve()
        except (ImportError, AttributeError):
            continue
        func = raw.__func__ if isinstance(raw, staticmethod) else raw
        if hasattr(func, _MARK):
            placed[patch.where] = patch
    return placed


def installed_parts() -> set[str]:
    """The parts (``compose_once``, ``params``, ``errors``) in place now."""
    return {patch.part for patch in _installed().values()}


def check_version() -> None:
    """Refuse an untested Hydra unless asked; then every patch point must still look as tipi expects."""
    import hydra

    version = tuple(int(p) for p in hydra.__version__.split(".")[:2] if p.isdigit())
    if version in TESTED:
        return
    tested = ", ".join(f"{a}.{b}.x" for a, b in TESTED)
    if os.environ.get(UNTESTED_OK, "") in ("", "0"):
        raise HydraVersionError(
            f"hydra-core {hydra.__version__} is installed; tipi's Hydra seam is tested on {tested}",
            key="hydra-core",
            hint=f"Install a tested one (pip install 'hydra-core>=1.3,<1.4'), or set {UNTESTED_OK}=1 to try it: "
            "tipi then checks each private callable it wraps and names the first that changed.",
        )
    problems = [p for p in (entry.problem() for entry in PATCHES + REACHED) if p]
    if problems:
        raise HydraVersionError(
            f"hydra-core {hydra.__version__}: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if problems[1:] else ""),
            key="hydra-core",
            hint=f"tipi's Hydra seam is tested on {tested}; tests/unit/test_hydra_seam.py lists every change.",
        )


def install(*parts: str) -> None:
    """Put the wrappers of ``parts`` in place (idempotent); the first call checks the Hydra version."""
    unknown = set(parts) - {patch.part for patch in PATCHES}
    if unknown:
        raise ValueError(f"unknown seam parts {sorted(unknown)}")
    placed = _installed()
    if not placed:
        check_version()
    for patch in PATCHES:
        if patch.part not in parts or patch.where in placed:
            continue
        owner, name, raw = patch.resolve()
        if isinstance(raw, staticmethod):
            setattr(owner, name, staticmethod(patch.wrapper(raw.__func__)))
        else:
            setattr(owner, name, patch.wrapper(raw))


def uninstall() -> None:
    """Put Hydra's own callables back, in reverse order (idempotent)."""
    for patch in reversed(PATCHES):
        try:
            owner, name, raw = patch.resolve()
        except (ImportError, AttributeError):
            continue
        static = isinstance(raw, staticmethod)
        func = raw.__func__ if static else raw
        original = getattr(func, _MARK, None)
        if original is not None:
            setattr(owner, name, staticmethod(original) if static else original)
    from tipi._hydra.compose_once import forget

    forget()


@contextmanager
def installed(*parts: str) -> Iterator[None]:
    """The wrappers of ``parts`` in place for the ``with`` block; Hydra's own afterwards (as they were)."""
    before = installed_parts()
    install(*parts)
    try:
        yield
    finally:
        uninstall()
        if before:
            install(*before)
