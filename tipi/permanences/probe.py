"""The network's dry run, before any data or network is built: values and shapes, checked where it costs nothing.

:meth:`tipi.permanences.network.Network.check_config` calls :func:`probe`
from the builder's gate, so a mistake is reported before the run directory
holds anything. It

1. checks the values of ``torch.optim`` optimizers and schedulers against the
   ranges torch accepts (torch's own message, "Invalid learning rate: -1",
   names neither the key nor the range);
2. builds the model on PyTorch's ``meta`` device (shapes, no memory, no
   arithmetic: a 9-level U-Net costs milliseconds), the optimizer over its
   parameters and the scheduler over that optimizer. A constructor that
   refuses a value is reported at the parameter to blame: the one its message
   names, else the one whose default makes it build;
3. pushes one batch of the data's configured shape (``[1, C, H, W]``)
   through the model in eval mode, and checks the output's channels against
   the number of classes and, for per-pixel logits, its height and width
   against the images'. A failure names every key involved
   (``model.depth``, ``data.image_size``, ``model.in_channels``, ``data.num_classes``).

This module runs those steps; :mod:`tipi.permanences.probe_build` builds
and runs on the meta device (or the CPU), and
:mod:`tipi.permanences.probe_blame` names the key to blame.

Any model is probed the same way, tipi's U-Net, a ``torch.nn`` stack or a
user's own. Where the meta device cannot run a layer (an op without a meta
kernel, a value read back with ``.item()``), the same is done with a real
model on the CPU and a zero batch of size 1, for models small enough to build
twice; a network the probe cannot run at all is skipped with a debug line,
never reported as an error: :meth:`Network.initialize` builds it for real.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tipi.core.errors import ConfigError
from tipi.permanences.probe_blame import (
    Batch,
    Node,
    blame,
    blame_shape,
    check_torch_ranges,
    involved,
    names_in,
    refused,
)
from tipi.permanences.probe_build import (
    build_model,
    cause,
    first_line,
    forward,
    meta_trouble,
    parameter_count,
    partial_on,
    quiet,
)

if TYPE_CHECKING:
    from tipi.core.check import ConfigCheck

# Node is re-exported: the network names its nodes with it (tipi.permanences.network)
__all__ = ["CPU_PROBE_MAX_PARAMETERS", "Node", "build_checked", "check_output", "nodes", "probe"]

log = logging.getLogger(__name__)

# A model this large (parameters) is built a second time on the CPU only when the meta
# device cannot tell (a failure that may be the meta device's own): 50 M float32 are 200 MB.
CPU_PROBE_MAX_PARAMETERS = 50_000_000
# The parameter that sets a model's output channels, by the names libraries give it.
_OUTPUT_PARAMETERS = ("num_classes", "classes", "n_classes", "num_labels", "out_channels", "output_nc")


def build_checked(node: Node, build: Callable[[dict[str, Any]], Any]) -> Any:
    """``build(node.cfg)``; a value it refuses is a ``ConfigError`` at the parameter to blame.

    Returns None when it fails in a way no parameter explains (left to the real build).
    """
    try:
        with quiet():
            return build(node.cfg)
    except Exception as exc:  # noqa: BLE001 - any constructor's error: blamed on a value or left to initialize
        error = cause(exc)
        if meta_trouble(error):
            log.debug("probe: %s cannot be built here (%s); left to initialize", node.key, first_line(error))
            return None
        name = blame(node, build, error)
        if name is not None:
            raise refused(node, name, error) from error
        log.debug("probe: %s cannot be built (%s) and no one value explains it", node.key, first_line(error))
        return None


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _run_batch(node: Node, model: Any, batch: Batch) -> Any:
    """The model's output for one batch: on the meta device, or (where meta cannot tell) for real on the CPU.

    Returns None when the probe cannot run it; raises a ``ConfigError`` when the batch does not pass.
    """
    try:
        return forward(model, batch.shape, "meta")
    except Exception as exc:  # noqa: BLE001 - any layer's error: confirmed below before it is reported
        error = cause(exc)
    is_meta_trouble = meta_trouble(error)
    if parameter_count(model) <= CPU_PROBE_MAX_PARAMETERS:  # confirm on the CPU: what fails there fails in training
        try:
            return forward(build_model(node.cfg, "cpu"), batch.shape, "cpu")
        except Exception as exc:  # noqa: BLE001 - as above
            error = cause(exc)
    elif is_meta_trouble:
        log.debug("probe: one batch through %s needs a real model (%s); skipped", node.key, first_line(error))
        return None
    named = names_in(str(error), list(node.own))
    key = (node.at(named[0]) if len(named) == 1 else node.key) if is_meta_trouble else blame_shape(node, batch, error)
    raise ConfigError(
        f"one batch of the configured shape {_shape_text((1, *batch.shape))} does not pass through the model: "
        f"{first_line(error)}",
        key=key,
        hint=f"Found before any data or network was built, with {involved(node, batch)}: change one of these.",
    )


def check_output(node: Node, output: Any, batch: Batch) -> None:
    """One logit per class (and, for per-pixel targets, one per pixel of the image); else a ``ConfigError``."""
    import torch

    if not isinstance(output, torch.Tensor) or output.ndim < 2:
        log.debug("probe: %s gives %s, not [N, classes, ...] logits; its output is not checked", node.key, type(output))
        return
    channels = int(output.shape[1])
    if channels != batch.num_classes:
        own = [n for n in _OUTPUT_PARAMETERS if n in node.own]
        raise ConfigError(
            f"the model gives {channels} output channel(s) {_shape_text(tuple(output.shape))}, but the data has "
            f"{batch.num_classes} classes ({batch.classes_key}={batch.num_classes}): it needs one logit per class",
            key=node.at(own[0]) if own else node.key,
            hint=f"Found before any data or network was built, with {involved(node, batch)}: make the model's "
            f"last layer give {batch.num_classes} channels, or set {batch.classes_key}.",
        )
    if batch.per_pixel and output.ndim == 4 and tuple(output.shape[-2:]) != tuple(batch.shape[-2:]):
        height, width = batch.shape[-2:]
        raise ConfigError(
            f"the model's output is {output.shape[-2]}x{output.shape[-1]} for {height}x{width} images: per-pixel "
            "logits must have the images' height and width",
            key=node.key,
            hint=f"Found before any data or network was built, with {involved(node, batch)}: change one of these.",
        )


def _batch(check: ConfigCheck) -> Batch | None:
    """The data permanence's batch, from its config; None when it does not say (no data, no fixed image size)."""
    from tipi.permanences.data import Data

    found = check.find(Data)
    if found is None:
        return None
    name, data = found
    shape = data.target.input_shape(data.params)
    num_classes = data.params.get("num_classes")
    if shape is None or not isinstance(num_classes, int):
        return None
    key = f"permanences.{name}"
    keys = {check.typed(f"{key}.{k}"): data.params[k] for k in data.target.shape_keys if k in data.params}
    defaults = {k: p.default for k, p in inspect.signature(data.target).parameters.items() if p.default is not p.empty}
    at_default = {}
    for k in data.target.shape_keys:
        if k in defaults and k in data.params and defaults[k] != data.params[k]:
            other = data.target.input_shape({**data.params, k: defaults[k]})
            if other is not None:
                at_default[check.typed(f"{key}.{k}")] = tuple(other)
    classes_key = check.typed(f"{key}.num_classes")
    return Batch(tuple(shape), num_classes, keys, classes_key, bool(data.target.per_pixel_targets), at_default)


def probe(model: Node | None, optimizer: Node | None, scheduler: Node | None, check: ConfigCheck) -> None:
    """Check the network's values and shapes as described in this module; raise a ``ConfigError`` naming the key."""
    for node in (optimizer, scheduler):
        if node is not None:
            check_torch_ranges(node)
    import torch

    built = build_checked(model, lambda cfg: build_model(cfg, "meta")) if model is not None else None
    module = built if isinstance(built, torch.nn.Module) else None
    if optimizer is not None:
        parameters = list(module.parameters()) if module is not None else [torch.nn.Parameter(torch.zeros(1))]
        trial = build_checked(optimizer, partial_on(parameters))
        if scheduler is not None and trial is not None:
            build_checked(scheduler, partial_on(trial))
    if model is None or module is None:
        if built is not None and model is not None:
            log.debug("probe: %s is no torch.nn.Module (%s); it is not run on a batch", model.key, type(built))
        return
    batch = _batch(check)
    if batch is None:
        log.debug("probe: the data does not say its batch shape; %s is not run on one", model.key)
        return
    output = _run_batch(model, module, batch)
    if output is not None:
        check_output(model, output, batch)


def nodes(params: Mapping[str, Any], check: ConfigCheck) -> dict[str, Node | None]:
    """The network's ``model``, ``optimizer`` and ``scheduler`` nodes (None where one is not a ``_target_`` node)."""
    found: dict[str, Node | None] = {}
    for name in ("model", "optimizer", "scheduler"):
        cfg = params.get(name)
        ok = isinstance(cfg, dict) and "_target_" in cfg
        found[name] = Node(dict(cfg), f"{check.key}.{name}", check.typed) if ok else None  # type: ignore[arg-type]  # a dict when ok
    return found
