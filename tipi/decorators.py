"""``@pipeline_process``: a plain function becomes a configurable pipeline process.

::

    @pipeline_process
    def train(data: DataModule, epochs: int = 10, lr: float = 1e-3) -> float:
        device = device_manager.get_device()
        for epoch in progress_bar(range(epochs), desc="epoch"):
            ...
        return best

    train(my_data, epochs=5)          # still a function: runs in a script

    # conf/pipeline/...yaml
    processes:
      train:
        _target_: my_project.train    # the builder uses train.process_class
        epochs: 20                    # optional: lr is a config key (1e-3) all the same

The function's parameters split in two:

- *config options*: every parameter except those below. They are config
  keys with the function's defaults whether or not the YAML lists them
  (:mod:`tipi.params`: ``processes.train.lr=...`` needs no ``+``, ``--cfg job``
  and ``--help`` show them); they are the process's signature for the builder,
  so ``processes.train.epocs=5`` is reported before the run with "Did you mean
  'epochs'?"; and their type hints check the values.
- *injected*: a parameter annotated with a ``Permanence`` subclass (the
  permanence of the same name is passed; it must be configured and of that
  type), an *unannotated* parameter without a default (the permanence of the
  same name; it must be configured), and a parameter called ``controller``
  (the ``PipelineController``). ``X | None = None`` annotated with a
  permanence type is optional: injected when configured, else its default.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from tipi.core.context import current_controller, get_current_controller
from tipi.core.permanence import Permanence
from tipi.core.process import PipelineProcess

if TYPE_CHECKING:
    from tipi.core.controller import PipelineController

__all__ = ["pipeline_process"]

PS = ParamSpec("PS")
R = TypeVar("R")

_RESERVED = frozenset({"force"})  # the process's own option: processes.<name>.force=true


def _permanence_type(annotation: Any) -> tuple[type[Permanence] | None, bool]:
    """``(permanence class, optional)`` when ``annotation`` is ``P`` or ``P | None``; else ``(None, False)``."""
    if isinstance(annotation, type) and issubclass(annotation, Permanence):
        return annotation, False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        perms = [a for a in args if isinstance(a, type) and issubclass(a, Permanence)]
        others = [a for a in args if a is not type(None) and a not in perms]
        if len(perms) == 1 and not others:
            return perms[0], type(None) in args
    return None, False


class _Plan:
    """How each parameter of the function is filled: from the config, a permanence or the controller."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.signature = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn)
        except Exception:  # noqa: BLE001 - unresolvable (string) hints: fall back to the raw annotations
            hints = {}
        self.injected: dict[str, tuple[type | None, bool]] = {}  # name -> (expected type, optional)
        self.wants_controller = False
        config: list[inspect.Parameter] = []
        for param in self.signature.parameters.values():
            if param.name in _RESERVED:
                raise TypeError(
                    f"@pipeline_process {fn.__qualname__}: parameter '{param.name}' is reserved "
                    f"(processes.<name>.{param.name} is tipi's own option); rename it"
                )
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                if param.kind is param.VAR_KEYWORD:
                    config.append(param)  # **kwargs: the process accepts any further option
                continue
            annotation = hints.get(param.name, param.annotation)
            if param.name == "controller":
                self.wants_controller = True
                continue
            perm_type, optional = _permanence_type(annotation)
            if perm_type is not None:
                self.injected[param.name] = (perm_type, optional or param.default is not param.empty)
            elif annotation is param.empty and param.default is param.empty:
                self.injected[param.name] = (None, False)
            else:
                # Resolved hints, not the strings of ``from __future__ import annotations``.
                config.append(param.replace(annotation=annotation))
        self.positional_only = [p.name for p in self.signature.parameters.values() if p.kind is p.POSITIONAL_ONLY]
        head = [
            inspect.Parameter("controller", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter("force", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=False, annotation=bool),
        ]
        tail = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind is not p.VAR_KEYWORD else p for p in config]
        # Keyword-only after (controller, force): the builder binds config options by name.
        self.process_signature = inspect.Signature(head + tail)

    @property
    def requires(self) -> dict[str, type]:
        """Permanences that must be configured: the non-optional injected ones."""
        return {name: (expected or Permanence) for name, (expected, optional) in self.injected.items() if not optional}

    def call(
        self,
        fn: Callable[..., R],
        controller: PipelineController | None,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        from_config: bool = False,
    ) -> R:
        """Call ``fn`` with ``args``/``kwargs``, filling what they leave out from ``controller``.

        ``from_config``: every argument came by name from the config, so
        positional-only parameters are moved to their positions.
        """
        if from_config and self.positional_only:
            # Config options arrive by name; a positional-only parameter must be passed by position.
            leading = [kwargs.pop(name) for name in self.positional_only if name in kwargs]
            args = (*leading, *args)
        if controller is not None:
            bound = self.signature.bind_partial(*args, **kwargs).arguments
            if self.wants_controller and "controller" not in bound:
                kwargs["controller"] = controller
            for name, (expected, optional) in self.injected.items():
                if name in bound:
                    continue
                perm = controller.permanences.get(name)
                if perm is None and optional:
                    continue  # switched off or absent: the function's default applies
                kwargs[name] = controller.get_permanence(name, expected)
        return fn(*args, **kwargs)


@overload
def pipeline_process(fn: Callable[PS, R], /) -> Callable[PS, R]: ...
@overload
def pipeline_process(*, name: str | None = None) -> Callable[[Callable[PS, R]], Callable[PS, R]]: ...


def pipeline_process(fn: Callable[..., Any] | None = None, /, *, name: str | None = None) -> Any:
    """Make ``fn`` usable as a pipeline process, keeping it a normal function.

    Returns a wrapper that calls ``fn`` exactly as given - inside a running
    pipeline it also fills the injected parameters the caller left out - and
    carries ``process_class``: a ``PipelineProcess`` subclass whose
    ``__tipi_signature__`` is ``(controller, force=False, *, <config options>)``,
    whose ``__tipi_function__`` is ``fn`` (its type hints check config values),
    whose ``requires`` names the permanences it needs, and whose ``execute()``
    returns ``fn``'s return value. ``name`` names the class (default: the function's).
    """
    if fn is None:
        return functools.partial(_decorate, name=name)
    return _decorate(fn, name)


def _decorate(fn: Callable[..., Any], name: str | None) -> Any:
    """``@pipeline_process`` applied to ``fn``: the wrapper carrying ``process_class``."""
    if not callable(fn):
        raise TypeError(f"@pipeline_process decorates a function, got {type(fn).__name__}")
    plan = _Plan(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return plan.call(fn, get_current_controller(), args, kwargs)

    wrapper.process_class = _process_class(fn, plan, name)  # type: ignore[attr-defined]  # the wrapper is a plain function; the attribute is tipi's marker
    return wrapper


def _process_class(fn: Callable[..., Any], plan: _Plan, name: str | None) -> type[PipelineProcess]:
    def __init__(self: Any, controller: PipelineController, force: bool = False, **params: Any) -> None:
        PipelineProcess.__init__(self, controller, force)
        self.params = params

    def execute(self: Any) -> Any:
        """Call the function with the configured options and the injected permanences."""
        # The executor has set the context already; set it here too so a
        # process run by hand (tests, notebooks) sees its pipeline in the helpers.
        token = current_controller.set(self.controller) if get_current_controller() is not self.controller else None
        try:
            return plan.call(fn, self.controller, (), dict(self.params), from_config=True)
        finally:
            if token is not None:
                current_controller.reset(token)

    def skip(self: Any) -> bool:
        """A function has no outputs tipi knows of: never skipped."""
        return False

    class_name = name or f"{fn.__name__}_process"
    namespace: dict[str, Any] = {
        "__init__": __init__,
        "execute": execute,
        "skip": skip,
        "requires": plan.requires,
        "__tipi_signature__": plan.process_signature,
        "__tipi_function__": fn,
        "__module__": getattr(fn, "__module__", __name__),
        "__qualname__": f"{getattr(fn, '__qualname__', class_name)}.process_class",
        "__doc__": fn.__doc__ or f"The pipeline process of {fn.__qualname__}.",
    }
    return typing.cast(type[PipelineProcess], type(class_name, (PipelineProcess,), namespace))
