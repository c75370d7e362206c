"""The builder: a composed config -> permanences and process specs.

Everything is checked before anything is built (hydra-zen's ``validate``
idea): every ``_target_`` imports, every parameter binds to its signature
with a plausible type (:mod:`tipi.core.binding`), and every permanence a
process asks for exists. So a typo in the last process is reported before the
first one starts.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import (
    GrammarParseError,
    InterpolationKeyError,
    InterpolationToMissingValueError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    UnsupportedInterpolationType,
)

from tipi.core.binding import check_params
from tipi.core.check import Checked, ConfigCheck, matches, typed_key, unknown_metric
from tipi.core.errors import ConfigError, did_you_mean
from tipi.core.permanence import Permanence
from tipi.core.process import PipelineProcess, ProcessSpec

# check_params is re-exported: the network and the metrics logger check their nested nodes with it
__all__ = [
    "HYDRA_KEYS",
    "OBJECTIVE_MODES",
    "PipelineBuilder",
    "as_process_class",
    "check_params",
    "config_error",
    "declared_metrics",
    "locate",
]

log = logging.getLogger(__name__)
OBJECTIVE_MODES = ("max", "min")
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_convert_", "_recursive_", "_args_"})
# Mistakes in the config itself; other resolution errors (a resolver that needs
# Hydra's runtime) are left to the code that reads the value.
_UNRESOLVABLE = (
    InterpolationKeyError,
    InterpolationToMissingValueError,
    UnsupportedInterpolationType,
    GrammarParseError,
)


def _holder(cfg: DictConfig, exc: OmegaConfBaseException) -> str | None:
    """The key whose own value holds the broken ``${...}`` (OmegaConf names the key that led to it)."""
    match = re.search(r"Interpolation key '([^']+)' not found", str(exc))
    if match is None:
        return None
    wanted = "${" + match.group(1)

    def walk(node: Any, path: str) -> str | None:
        if isinstance(node, dict):
            for k, v in node.items():
                found = walk(v, f"{path}.{k}" if path else str(k))
                if found:
                    return found
        elif isinstance(node, list):
            for i, v in enumerate(node):
                found = walk(v, f"{path}[{i}]")
                if found:
                    return found
        elif isinstance(node, str) and wanted in node:
            return path
        return None

    plain = OmegaConf.to_container(cfg, resolve=False)
    if isinstance(plain, dict):
        plain.pop("hydra", None)
    return walk(plain, "")


def config_error(exc: OmegaConfBaseException, key: str) -> ConfigError:
    """An OmegaConf error as a ``ConfigError`` at the absolute key it is about (``data.root``)."""
    full_key = getattr(exc, "full_key", None) or key
    if isinstance(exc, MissingMandatoryValue):
        return ConfigError(
            "is required but not set (???)", key=full_key, hint=f"Set it on the command line: {full_key}=..."
        )
    message = (getattr(exc, "msg", None) or str(exc)).splitlines()[0]
    return ConfigError(f"cannot resolve: {message}", key=full_key)


def locate(path: str, key: str) -> Any:
    """Import ``path`` (``package.module.Name``); a ``ConfigError`` at ``key`` if it does not."""
    if not isinstance(path, str) or not path:
        raise ConfigError(f"_target_ must be a dotted import path, got {path!r}", key=key)
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                continue  # the module itself does not exist: try a shorter prefix
            raise ConfigError(f"importing '{module_name}' for '{path}' failed: {exc}", key=key) from exc
        except Exception as exc:
            raise ConfigError(f"importing '{module_name}' for '{path}' failed: {exc!r}", key=key) from exc
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                names = [n for n in dir(obj) if not n.startswith("_")]
                guess = did_you_mean(attr, names)
                hint = f"Did you mean '{'.'.join(parts[:i])}.{guess}'?" if guess else None
                raise ConfigError(f"cannot import '{path}': '{obj.__name__}' has no '{attr}'", key=key, hint=hint)
            obj = getattr(obj, attr)
        return obj
    raise ConfigError(
        f"cannot import '{path}': no module '{parts[0]}'",
        key=key,
        hint="Check the spelling, and that the package is installed or on PYTHONPATH.",
    )


def as_process_class(obj: Any, key: str) -> type[PipelineProcess]:
    """The ``PipelineProcess`` class behind a target (a class or a ``@pipeline_process`` function)."""
    process_class = getattr(obj, "process_class", None)
    if process_class is not None:
        return process_class
    if isinstance(obj, type) and issubclass(obj, PipelineProcess):
        return obj
    raise ConfigError(
        f"'{getattr(obj, '__qualname__', obj)}' is not a PipelineProcess subclass or a @pipeline_process function",
        key=key,
    )


def declared_metrics(classes: Iterable[type[PipelineProcess]]) -> tuple[str, ...] | None:
    """Every metric name the processes declare; None when one of them declares none (nothing can be refused)."""
    names: list[str] = []
    for cls in classes:
        declared = getattr(cls, "metrics", None)
        if declared is None:
            return None
        names.extend(declared)
    return tuple(names)


class PipelineBuilder:
    """Turns a composed config into ``(permanences, process_specs)``.

    Every ``ConfigError`` it raises names the key the user typed (``data.batch_size``,
    ``seed``), not the path the engine reached it by (``permanences.data.seed``).
    """

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self._perm_checked: dict[str, Checked] = {}
        self._raw: dict[str, Any] | None = None

    def typed(self, key: str) -> str:
        """The key the user types to change the value at ``key`` (:func:`tipi.core.check.typed_key`)."""
        if self._raw is None:
            try:
                raw = OmegaConf.to_container(self.cfg, resolve=False)
            except OmegaConfBaseException:  # not a plain tree: keys stay as the engine names them
                raw = None
            self._raw = {str(k): v for k, v in raw.items() if k != "hydra"} if isinstance(raw, dict) else {}
        return typed_key(self._raw, key)

    @contextlib.contextmanager
    def _typed_keys(self) -> Iterator[None]:
        """A ``ConfigError`` raised inside names the key the user typed (a target's own checks name the path)."""
        try:
            yield
        except ConfigError as exc:
            if exc.key:
                exc.key = self.typed(exc.key)
            raise

    def _section(self, name: str) -> dict[str, Any]:
        node = self.cfg.get(name)
        if node is None:
            return {}
        if not isinstance(node, DictConfig):
            raise ConfigError(f"must be a mapping of name -> _target_ node, got {type(node).__name__}", key=name)
        try:
            return {str(k): node[k] for k in node}  # indexing resolves ${data}-style references
        except OmegaConfBaseException as exc:
            raise config_error(exc, name) from exc

    @staticmethod
    def _params(node: Any, key: str) -> dict[str, Any]:
        try:
            container = OmegaConf.to_container(node, resolve=True, throw_on_missing=True)
        except OmegaConfBaseException as exc:
            raise config_error(exc, key) from exc  # full_key is absolute: data.root, not permanences.data.root
        if not isinstance(container, dict) or "_target_" not in container:
            raise ConfigError("needs a _target_ naming the class to build", key=key)
        return {str(k): v for k, v in container.items()}

    def check(self) -> tuple[dict[str, Any], dict[str, tuple[type[PipelineProcess], dict[str, Any]]]]:
        """Check the whole config; return the permanence nodes and process classes with params."""
        # The references as written, read before anything is built: instantiating a node with
        # _recursive_: false resolves the nodes it refers to in place (Hydra's resolve of its copy).
        self._raw = None
        self.typed("")
        with self._typed_keys():
            return self._check()

    def _check(self) -> tuple[dict[str, Any], dict[str, tuple[type[PipelineProcess], dict[str, Any]]]]:
        try:  # an interpolation to a missing key anywhere (run.name=${nope}), not only in the nodes below
            OmegaConf.to_container(self.cfg, resolve=True, throw_on_missing=False)
        except _UNRESOLVABLE as exc:
            error = config_error(exc, "")
            error.key = _holder(self.cfg, exc) or error.key
            raise error from exc
        self._check_objective_mode()
        self._check_deterministic()
        perm_nodes = {n: node for n, node in self._section("permanences").items() if node is not None}
        self._perm_checked = {name: self._check_permanence(name, node) for name, node in perm_nodes.items()}
        perm_targets = {name: checked.target for name, checked in self._perm_checked.items()}
        processes: dict[str, tuple[type[PipelineProcess], dict[str, Any]]] = {}
        for name, node in self._section("processes").items():
            if node is not None:
                processes[name] = self._check_process(name, node, perm_targets)
        metrics = declared_metrics(cls for cls, _ in processes.values())
        for name, (cls, params) in processes.items():
            cls.check_config(params, self._context(f"processes.{name}", metrics))
        self._check_objective(metrics)
        return perm_nodes, processes

    def _context(self, key: str, metrics: tuple[str, ...] | None = None) -> ConfigCheck:
        return ConfigCheck(key=key, metrics=metrics, permanences=dict(self._perm_checked), typed=self.typed)

    def check_permanences(self) -> None:
        """Each permanence target's own ``check_config`` (after :meth:`check`).

        Run last by :meth:`build`, after construction: the network imports its
        model's module (torch among them), so every mistake that can be found
        without torch (a typo, a device that does not exist, a data folder's
        layout) is reported first, and fast.
        """
        with self._typed_keys():
            for name, checked in self._perm_checked.items():
                hook = getattr(checked.target, "check_config", None)
                if callable(hook):
                    hook(checked.params, self._context(f"permanences.{name}"))

    def _check_objective_mode(self) -> None:
        """``run.objective_mode`` is one of :data:`OBJECTIVE_MODES` (a sweep and ``tipi-runs`` rank runs by it)."""
        mode = OmegaConf.select(self.cfg, "run.objective_mode", default=None)
        if mode is not None and mode not in OBJECTIVE_MODES:
            error = ConfigError.unknown("run.objective_mode", str(mode), OBJECTIVE_MODES, "choice")
            # WandB's and Optuna's spellings (maximize, minimize) are too long for a close match
            spelt = next((m for m in OBJECTIVE_MODES if str(mode).lower().startswith(m)), None)
            error.hint = error.hint or (f"Did you mean '{spelt}'?" if spelt else None)
            raise error

    def _check_deterministic(self) -> None:
        """``run.deterministic`` is true or false (a string such as 'yes' would silently mean false)."""
        value = OmegaConf.select(self.cfg, "run.deterministic", default=False)
        if not isinstance(value, bool):
            raise ConfigError(
                f"must be true or false, got {value!r}",
                key="run.deterministic",
                hint="run.deterministic=true for bit-exact repeats on the same hardware.",
            )

    def _check_objective(self, metrics: tuple[str, ...] | None) -> None:
        """A misspelt ``run.objective`` is refused; one this pipeline simply does not log is only warned about.

        (Dropping ``~processes.test`` leaves the default ``test/mean_iou`` unlogged: not a mistake.)
        """
        objective = OmegaConf.select(self.cfg, "run.objective", default=None)
        if not objective or metrics is None or matches(str(objective), metrics):
            return
        # A typo has a near name in the same split (test/mean_iuo ~ test/mean_iou); test/mean_iou
        # after ~processes.test has no test/ metric at all: not a typo, the split is not run.
        split = str(objective).split("/", 1)[0] + "/"
        if did_you_mean(str(objective), [m for m in metrics if m.startswith(split)]) is not None:
            raise unknown_metric("run.objective", str(objective), metrics)
        steps = [str(k) for k in (OmegaConf.select(self.cfg, "processes", default=None) or {})]
        last = f"processes.{steps[-1]}" if steps else "the last process"
        logged = [m for m in metrics if "*" not in m and m.count("/") == 1][:6]
        log.warning(
            "run.objective '%s' is logged by no process of this pipeline: the run's objective will be the "
            "number %s returns, or none if it returns no number; set run.objective to a metric it logs (%s)",
            objective,
            last,
            ", ".join(logged) or "none logged",
        )

    def _check_permanence(self, name: str, node: Any) -> Checked:
        """Locate a permanence's target and bind its parameters; return it and its own parameters."""
        key = f"permanences.{name}"
        params = self._params(node, key)
        target = locate(params["_target_"], f"{key}._target_")
        if isinstance(target, type) and not issubclass(target, Permanence):
            raise ConfigError(f"'{params['_target_']}' is not a Permanence subclass", key=f"{key}._target_")
        own = {k: v for k, v in params.items() if k not in HYDRA_KEYS}
        check_params(target, own, key, typed=self.typed)
        return Checked(target, own)

    def _check_process(
        self, name: str, node: Any, perm_targets: Mapping[str, Any]
    ) -> tuple[type[PipelineProcess], dict[str, Any]]:
        """Locate a process's class, bind its parameters, check the permanences it requires exist."""
        key = f"processes.{name}"
        params = self._params(node, key)
        cls = as_process_class(locate(params.pop("_target_"), f"{key}._target_"), f"{key}._target_")
        check_params(cls, params, key, injected=("controller",), typed=self.typed)
        for needed, expected in dict(getattr(cls, "requires", {}) or {}).items():
            if needed not in perm_targets:
                raise ConfigError(
                    f"process '{name}' needs permanence '{needed}', which is not configured. "
                    f"Configured: {', '.join(perm_targets) or '(none)'}",
                    key=f"{key}",
                    hint=f"Add permanences.{needed} (a _target_ node), or drop the process with ~{key}.",
                )
            target = perm_targets[needed]
            if isinstance(target, type) and isinstance(expected, type) and not issubclass(target, expected):
                raise ConfigError(
                    f"process '{name}' needs a {expected.__name__}, but this is a {target.__name__}",
                    key=f"permanences.{needed}",
                )
        return cls, params

    def build(self, *, check_permanences: bool = True) -> tuple[dict[str, Permanence | None], list[ProcessSpec]]:
        """Check everything, then construct the permanences (nothing is allocated yet).

        ``check_permanences=False`` leaves :meth:`check_permanences` to the caller (the runner
        calls it once the permanences joined their controller, after their torch-free checks).
        """
        from hydra.errors import InstantiationException
        from hydra.utils import instantiate

        perm_nodes, processes = self.check()
        permanences: dict[str, Permanence | None] = {}
        with self._typed_keys():
            for name, node in self._section("permanences").items():
                if node is None:
                    permanences[name] = None
                    continue
                try:
                    permanences[name] = instantiate(perm_nodes[name], _convert_="all")
                except InstantiationException as exc:
                    cause = exc.__cause__ or exc
                    if isinstance(cause, ConfigError):
                        raise cause from exc
                    raise ConfigError(f"cannot be constructed: {cause}", key=f"permanences.{name}") from exc
        if check_permanences:
            self.check_permanences()
        specs = [ProcessSpec(cls, params, name=name) for name, (cls, params) in processes.items()]
        return permanences, specs
