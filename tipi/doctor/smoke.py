"""The smoke run: a few training steps of the seg model on one device, through tipi's own permanences.

The Device and Network permanences do what a real run does: resolve the
device, build the model and optimizer from their config nodes, turn on AMP on
CUDA (``network.amp=true``; the dtype is whatever the Network chooses) and
write ``last.pt`` atomically. The run passes when the loss falls and the
checkpoint, loaded on the CPU with ``weights_only=True``, holds the trained
weights. Runs in a worker process (imports torch).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

STEPS = 12
BATCH = 8
IMAGE_SIZE = 32
MODEL = {"_target_": "tipi.vision.unet.UNet", "in_channels": 3, "num_classes": 4, "base_channels": 4, "depth": 2}
OPTIMIZER = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}


def _autocast_dtype(device_type: str) -> str | None:
    """The dtype autocast uses here and now (None when it is off); torch < 2.4 knows only CUDA's."""
    import torch

    try:
        if torch.is_autocast_enabled(device_type):
            return str(torch.get_autocast_dtype(device_type)).removeprefix("torch.")
        return None
    except (TypeError, AttributeError):
        if device_type == "cuda" and torch.is_autocast_enabled():
            return str(torch.get_autocast_gpu_dtype()).removeprefix("torch.")
        return None


def _train(network: Any, steps: int) -> tuple[list[float], str]:
    """``steps`` steps on one fixed batch of shapes (it must be learnt); the losses and the autocast dtype."""
    import torch.nn.functional as F

    from tipi.vision.shapes import ShapesDataset

    data = ShapesDataset(BATCH, image_size=IMAGE_SIZE, seed=0)
    images, masks = data.images.to(network.device), data.masks.long().to(network.device)
    model, optimizer = network.model, network.optimizer
    model.train()
    losses, dtype = [], "float32"
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with network.autocast():
            dtype = _autocast_dtype(network.device.type) or dtype
            loss = F.cross_entropy(model(images), masks)
        network.backward_and_step(loss)
        losses.append(float(loss.detach()))
    return losses, dtype


def _reloads_on_cpu(network: Any, path: Path) -> bool:
    """Whether ``path`` loads on the CPU into a fresh model and holds exactly the trained weights."""
    import torch
    from hydra.utils import instantiate

    from tipi.permanences.network import load_checkpoint

    state = load_checkpoint(path)["model"]
    fresh = instantiate(MODEL)
    fresh.load_state_dict(state)
    trained = network.model.state_dict()
    return all(v.device.type == "cpu" and torch.equal(v, trained[k].cpu()) for k, v in state.items())


def smoke_run(device: str, steps: int = STEPS) -> dict[str, Any]:
    """Train on ``device`` for ``steps`` steps, checkpoint, reload on CPU; what happened, as plain values."""
    import torch

    from tipi.core.context import RunContext
    from tipi.core.controller import PipelineController, cyclic_gc_paused
    from tipi.permanences.device import Device
    from tipi.permanences.network import Network

    torch.manual_seed(0)  # the same weights and losses on every run of the doctor
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tipi-doctor-") as tmp:
        dev = Device(device)
        net = Network(MODEL, OPTIMIZER, amp=True)
        PipelineController({"device": dev, "network": net}, [], RunContext(run_dir=Path(tmp)))
        try:
            with cyclic_gc_paused():  # as the real controller does: building imports much, collects nothing
                dev.initialize()
                net.initialize()
            losses, dtype = _train(net, steps)
            net.checkpoint()
            reloaded = _reloads_on_cpu(net, net.checkpoint_dir / "last.pt")
        finally:
            net.cleanup()
            dev.cleanup()
    return {
        "device": device,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "steps": steps,
        "amp_dtype": dtype,
        "reloaded_on_cpu": reloaded,
        "seconds": time.perf_counter() - start,
    }
