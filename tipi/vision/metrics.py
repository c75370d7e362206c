"""Segmentation metrics from a confusion matrix that stays on the device.

``update`` only launches tensor operations (no ``.item()``, no boolean
indexing, no ``bincount``, each of which would wait for the device), so it can
be called every batch without stalling a GPU; ``compute`` copies the small
``[C, C]`` matrix to the host once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


class ConfusionMatrix:
    """Accumulates a ``[C, C]`` int64 confusion matrix: rows are targets, columns predictions.

    Target pixels outside ``0..C-1`` (an ignore label such as 255) are not counted.

    Args:
        num_classes: number of classes ``C``.
        device: where the matrix lives; put it where the predictions are.
        class_names: names for the ``iou/<name>`` keys; ``0..C-1`` by default.
    """

    def __init__(
        self,
        num_classes: int,
        device: torch.device | str | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"got {len(class_names)} class names for {num_classes} classes: {list(class_names)}")
        self.num_classes = num_classes
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.class_names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(num_classes))
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=self.device)

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, logits_or_preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch.

        Args:
            logits_or_preds: ``[N, C, H, W]`` logits (argmax over ``C`` is taken)
                or ``[N, H, W]`` predicted class indices.
            target: ``[N, H, W]`` class indices.
        """
        if logits_or_preds.ndim == target.ndim + 1:
            if logits_or_preds.shape[1] != self.num_classes:
                raise ValueError(
                    f"logits have {logits_or_preds.shape[1]} channels, expected num_classes={self.num_classes}"
                )
            preds = logits_or_preds.argmax(dim=1)
        else:
            preds = logits_or_preds
        if preds.shape != target.shape:
            raise ValueError(f"predictions {list(preds.shape)} and target {list(target.shape)} differ in shape")
        c = self.num_classes
        preds = preds.reshape(-1).to(device=self.device, dtype=torch.int64)
        target = target.reshape(-1).to(device=self.device, dtype=torch.int64)
        # Weight out-of-range pixels with 0 rather than dropping them: a boolean
        # mask would need the count of kept pixels on the host.
        valid = (target >= 0) & (target < c) & (preds >= 0) & (preds < c)
        index = torch.where(valid, target * c + preds, torch.zeros_like(target))
        self.matrix.view(-1).index_add_(0, index, valid.to(torch.int64))

    def compute(self) -> dict[str, float]:
        """Return ``pixel_acc``, ``mean_iou``, ``dice`` and ``iou/<class name>``.

        ``mean_iou`` averages over the classes present in the target or the
        prediction; ``dice`` averages over such classes except class 0
        (background). A class present in neither has ``iou/<name>`` NaN.

        Raises:
            RuntimeError: when no pixel has been counted yet.
        """
        matrix = self.matrix.detach().to("cpu", torch.float64)
        total = matrix.sum().item()
        if total == 0:
            raise RuntimeError("ConfusionMatrix.compute() called before any pixel was counted by update()")
        true_positive = matrix.diagonal()
        in_target = matrix.sum(dim=1)
        in_pred = matrix.sum(dim=0)
        union = in_target + in_pred - true_positive
        present = union > 0
        iou = torch.where(present, true_positive / union.clamp(min=1), torch.full_like(union, math.nan))
        dice = torch.where(
            present, 2 * true_positive / (in_target + in_pred).clamp(min=1), torch.full_like(union, math.nan)
        )
        foreground = present.clone()
        foreground[0] = False
        result = {
            "pixel_acc": true_positive.sum().item() / total,
            "mean_iou": iou[present].mean().item(),
            "dice": dice[foreground].mean().item() if foreground.any() else math.nan,
        }
        for name, value in zip(self.class_names, iou.tolist(), strict=True):
            result[f"iou/{name}"] = value
        return result
