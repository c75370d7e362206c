"""Evaluation on a split (shared by training, validation and test) and the validation step."""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from tipi.core.process import PipelineProcess
from tipi.distributed import all_reduce_sum, broadcast_buffers, get_world_size, is_main_process
from tipi.permanences.data import Data
from tipi.permanences.network import Network
from tipi.processes.common import bar, logger_of, made_at_step, pixel_cross_entropy, write_json


def eval_metric_names(split: str) -> tuple[str, ...]:
    """The metric names :func:`evaluate` gives, logged as ``<split>/<name>`` (``iou/<class>`` per class)."""
    return tuple(f"{split}/{name}" for name in ("loss", "pixel_acc", "mean_iou", "dice", "iou/*"))


def evaluate(model: Any, network: Network, data: Data, split: str, controller: Any) -> dict[str, float]:
    """Loss, pixel accuracy, Dice and IoU (per class and mean) of ``model`` on ``split``.

    Statistics accumulate on the device; the host syncs once, at the end.
    """
    import torch

    from tipi.vision.metrics import ConfusionMatrix

    device = network.device
    matrix = ConfusionMatrix(data.num_classes, device, class_names=data.class_names)
    loss_sum = torch.zeros((), device=device)
    pixels = 0
    loader = data.loader(split)  # with several ranks: this rank's share, every sample on exactly one rank
    broadcast_buffers(model)  # every rank evaluates rank 0's model (BatchNorm statistics included)
    was_training = model.training
    model.eval()
    with torch.no_grad(), bar(controller, f"eval-{split}", total=len(loader)) as b:
        for images, masks in loader:
            images = images.to(device, non_blocking=True)
            masks = masks.to(device, non_blocking=True)
            with network.autocast():
                logits = model(images)
            loss_sum += pixel_cross_entropy(logits.float(), masks, reduction="sum")
            pixels += masks.numel()
            matrix.update(logits, masks)
            b.advance()
    model.train(was_training)
    if get_world_size() > 1:  # the sums over the ranks' shares are the sums over the split
        counts = torch.tensor(float(pixels), dtype=torch.float64, device=device)
        all_reduce_sum(matrix.matrix, loss_sum, counts)
        pixels = int(counts.item())
    metrics = matrix.compute()
    metrics["loss"] = float(loss_sum.item()) / max(pixels, 1)
    return metrics


class EvaluationProcess(PipelineProcess):
    """Evaluates the network (best weights by default) on a split; writes ``<split>_metrics.json``."""

    requires: ClassVar[dict[str, type]] = {"network": Network, "data": Data}
    split: ClassVar[str] = "val"

    def __init__(self, controller: Any, force: bool = False, use_best: bool = True) -> None:
        super().__init__(controller, force)
        self.use_best = use_best

    @property
    def output(self):
        """``<run dir>/<split>_metrics.json``."""
        return self.controller.run_dir / f"{self.split}_metrics.json"

    def skip(self) -> bool:
        """Done when the metrics file exists for the network's current training step."""
        return made_at_step(self.output, self.controller.get_permanence("network", Network).state["step"])

    def execute(self) -> float:
        """Evaluate, log ``<split>/*`` metrics, return the mean IoU."""
        network = self.controller.get_permanence("network", Network)
        data = self.controller.get_permanence("data", Data)
        model = network.model
        best = network.checkpoint_dir / "best.pt"
        if self.use_best and best.exists():
            # A copy, so last.pt keeps the final weights of training.
            from tipi.permanences.network import load_checkpoint

            model = copy.deepcopy(network.model)
            assert model is not None  # initialized by the network permanence
            model.load_state_dict(load_checkpoint(best)["model"])
        metrics = evaluate(model, network, data, self.split, self.controller)
        logger = logger_of(self.controller)
        if logger is not None:
            logger.log({f"{self.split}/{k}": v for k, v in metrics.items()}, step=network.state["step"])
        if is_main_process():
            write_json(self.output, {**metrics, "step": network.state["step"]})
        return metrics["mean_iou"]


class ValidationProcess(EvaluationProcess):
    """Final validation of the best weights on the validation split."""

    split = "val"
    metrics = eval_metric_names("val")
