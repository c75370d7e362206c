"""The probe's trial builds: a model built on PyTorch's ``meta`` device (or the CPU) and one batch through it.

On the meta device a model has shapes and no memory, and a batch through it
costs no arithmetic; an optimizer or scheduler (a ``_partial_`` node) is built
over its first argument. Every trial is quiet: its warnings are the real
build's to give, once, in ``initialize``. Used by :mod:`tipi.permanences.probe`
and :mod:`tipi.permanences.probe_blame`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """A trial build's warnings are the real build's to give (once, in ``initialize``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def cause(exc: BaseException) -> BaseException:
    """The constructor's own error inside Hydra's ``InstantiationException``."""
    from hydra.errors import InstantiationException

    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name when it has none)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def meta_trouble(exc: BaseException) -> bool:
    """Whether ``exc`` may be the meta device's own limit (no kernel, no data) rather than the config's."""
    return isinstance(exc, NotImplementedError) or "meta" in str(exc).lower()


def build_model(cfg: dict[str, Any], device: str) -> Any:
    """The model the node ``cfg`` builds, with its tensors on ``device`` (``meta`` or ``cpu``)."""
    import torch
    from hydra.utils import instantiate

    with torch.device(device):
        return instantiate(cfg)


def forward(model: Any, shape: tuple[int, ...], device: str) -> Any:
    """The model's output for a batch of one zero sample of ``shape``, in eval mode, without gradients."""
    import torch

    model.eval()
    with torch.no_grad(), quiet():
        return model(torch.zeros((1, *shape), device=device))


def parameter_count(model: Any) -> int:
    """How many numbers the model's parameters hold."""
    return sum(p.numel() for p in model.parameters())


def passes(cfg: dict[str, Any], shape: tuple[int, ...]) -> bool:
    """Whether one batch of ``shape`` passes through the model ``cfg`` builds (on the meta device)."""
    try:
        with quiet():
            forward(build_model(cfg, "meta"), shape, "meta")
    except Exception:  # noqa: BLE001 - any failure is a "no"
        return False
    return True


def partial_on(first: Any) -> Callable[[dict[str, Any]], Any]:
    """Build a ``_partial_`` node (an optimizer, a scheduler) and call it with its first argument."""

    def build(cfg: dict[str, Any]) -> Any:
        from hydra.utils import instantiate

        made = instantiate(cfg)
        return made(first) if cfg.get("_partial_") else made

    return build
