"""The PyTorch baseline: a plain training script over the same model, data and batch size as tipi's.

No Hydra, no tipi engine: it imports torch, builds tipi's ``UNet`` and
``ShapesDataset`` (loaded from tipi's source files the way a script loads its
own modules, without ``tipi/__init__.py`` and the Hydra/OmegaConf it pulls in),
an optimizer and a DataLoader, and runs the textbook loop. The harness passes
the settings it composed from ``+experiment=seg`` as JSON, so both sides use
the same numbers.

    python plain_train.py --setup '<json>' --first-step OUT   # times of the first step
    python plain_train.py --setup '<json>' --steps N --report OUT   # per-step breakdown
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path
from typing import Any


def load_vision() -> tuple[Any, Any]:
    """``UNet`` and ``ShapesDataset`` from tipi's source, without running ``tipi/__init__.py``."""
    spec = importlib.util.find_spec("tipi")  # locating a top-level package does not execute it
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("plain_train: tipi is not importable")
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, path in (("tipi", root), ("tipi.vision", root / "vision")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
    unet = importlib.import_module("tipi.vision.unet")
    shapes = importlib.import_module("tipi.vision.shapes")
    return unet.UNet, shapes.ShapesDataset


def _construct(node: dict[str, Any], *args: Any) -> Any:
    """``node["_target_"](*args, **node["kwargs"])``."""
    module_name, _, class_name = node["_target_"].rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)(*args, **node["kwargs"])


def build(setup: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """Model, optimizer (and scheduler) and training DataLoader (the val/test splits are built too, as tipi does)."""
    import torch
    from torch.utils.data import DataLoader

    unet_cls, dataset_cls = load_vision()
    torch.manual_seed(setup["seed"])
    data = setup["data"]
    splits = {}
    for offset, split in enumerate(("train", "val", "test")):
        splits[split] = dataset_cls(data[f"num_{split}"], image_size=data["image_size"],
                                    seed=setup["seed"] * 3 + offset + 1, noise=data["noise"],
                                    max_shapes=data["max_shapes"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = unet_cls(**setup["model"]).to(device)
    optimizer = _construct(setup["optimizer"], model.parameters())
    if setup.get("scheduler"):
        _construct(setup["scheduler"], optimizer)  # stepped per epoch; it wraps optimizer.step() from now on
    loader = DataLoader(splits["train"], batch_size=data["batch_size"], shuffle=True, drop_last=True)
    return model, optimizer, loader, device


def train(model: Any, optimizer: Any, batches: Any, device: Any, max_steps: int) -> int:
    """The textbook loop; returns the number of steps taken."""
    import torch.nn.functional as F

    model.train()
    steps = 0
    for images, masks in batches:
        images, masks = images.to(device), masks.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), masks)
        loss.backward()
        optimizer.step()
        steps += 1
        if steps >= max_steps:
            break
    return steps


def main(argv: list[str] | None = None) -> None:
    """Parse arguments; time the first step or record every step."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", required=True, help="JSON: model, optimizer, scheduler, data, seed")
    parser.add_argument("--first-step", type=Path, help="write the time.time() at the start and end of step 1 here")
    parser.add_argument("--steps", type=int, default=0, help="steps to run with the step clock")
    parser.add_argument("--report", type=Path, help="where the per-step breakdown goes")
    args = parser.parse_args(argv)
    setup = json.loads(args.setup)
    model, optimizer, loader, device = build(setup)
    if args.first_step is not None:
        starts: list[float] = []
        model.register_forward_pre_hook(lambda _module, _args: starts.append(time.time()) if not starts else None)
        train(model, optimizer, loader, device, max_steps=1)
        times = {"first_step_start": starts[0], "first_step_end": time.time()}
        args.first_step.write_text(json.dumps(times), encoding="utf-8")
        os._exit(0)  # as the tipi side does: the time to the first step is all that is measured
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.probes.step_clock import StepClock

    clock = StepClock()
    model.register_forward_pre_hook(clock.on_forward)
    optimizer.register_step_post_hook(clock.on_step_end)
    epochs_needed = (args.steps + len(loader) - 1) // len(loader)
    batches = (batch for _ in range(epochs_needed) for batch in loader)
    train(model, optimizer, clock.timed(batches), device, max_steps=args.steps)
    if args.report is not None:
        report = {"threads": torch.get_num_threads(), "batch_size": setup["data"]["batch_size"],
                  "steps": clock.breakdown()}
        args.report.write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    main()
