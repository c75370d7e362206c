"""Figures a run writes to ``figures/``: prediction grids and metric curves, as PNG.

Both functions write atomically (a temporary file in the target directory,
then ``os.replace``), so a run killed mid-write never leaves a truncated PNG.
matplotlib is imported only inside :func:`save_metric_curves`, with the Agg
canvas and no pyplot, so no GUI backend or global figure state is involved;
torch is not imported at all (tensors are accepted by duck typing).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tipi.atomic import atomic_write
from tipi.vision.transforms import denormalize_image, to_numpy

if TYPE_CHECKING:
    import torch

# Distinct, saturated colours for the first classes; background is black.
_BASE_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
)
_GAP = 2  # pixels of white between tiles
_GAP_COLOR = (255, 255, 255)
_MIN_TILE = 128  # images smaller than this are upscaled (nearest) to about this size
_X_KEYS = ("epoch", "step")


def default_class_colors(num_classes: int) -> list[tuple[int, int, int]]:
    """RGB colours for ``num_classes`` classes: a fixed palette, then the PASCAL VOC scheme."""
    colors = list(_BASE_COLORS[:num_classes])
    for index in range(len(colors), num_classes):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):  # the VOC bit-interleaving colour map
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colors.append((r, g, b))
    return colors


def colorize_mask(mask: np.ndarray, class_colors: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """Map an ``[H, W]`` array of class indices to a uint8 ``[H, W, 3]`` RGB image."""
    palette = np.asarray(class_colors, dtype=np.uint8)
    if mask.size and (mask.min() < 0 or mask.max() >= len(palette)):
        raise ValueError(
            f"mask holds class {int(mask.min()) if mask.min() < 0 else int(mask.max())}, "
            f"but only {len(palette)} class colours are given"
        )
    return palette[mask]


def save_prediction_grid(
    images: torch.Tensor | np.ndarray,
    masks: torch.Tensor | np.ndarray,
    preds: torch.Tensor | np.ndarray,
    path: str | Path,
    class_colors: Sequence[tuple[int, int, int]] | None = None,
    max_samples: int = 8,
    scale: int | None = None,
) -> Path:
    """Write a PNG with one row per sample: image | ground truth | prediction.

    Args:
        images: ``[N, 3, H, W]`` normalised images (as the datasets return them).
        masks: ``[N, H, W]`` class indices.
        preds: ``[N, H, W]`` class indices, or ``[N, C, H, W]`` logits (argmax is taken).
        path: the PNG to write; parent directories are created.
        class_colors: one RGB triple per class; a default palette otherwise.
        max_samples: at most this many rows.
        scale: integer upscale factor; by default small images are enlarged
            to about 128 pixels so a 64 px image is viewable.

    Returns:
        The path written.
    """
    images_np, masks_np, preds_np = _grid_arrays(images, masks, preds)
    n, _, height, width = images_np.shape
    if class_colors is None:
        largest = max(int(masks_np.max()), int(preds_np.max()))
        class_colors = default_class_colors(max(largest + 1, 1))
    if scale is None:
        scale = max(1, _MIN_TILE // max(height, width))

    rows = min(n, max_samples)
    tile_h, tile_w = height * scale, width * scale
    grid = np.empty(((tile_h + _GAP) * rows + _GAP, (tile_w + _GAP) * 3 + _GAP, 3), dtype=np.uint8)
    grid[...] = _GAP_COLOR
    for row in range(rows):
        tiles = (
            denormalize_image(images_np[row]),
            colorize_mask(masks_np[row], class_colors),
            colorize_mask(preds_np[row], class_colors),
        )
        top = _GAP + row * (tile_h + _GAP)
        for column, tile in enumerate(tiles):
            left = _GAP + column * (tile_w + _GAP)
            grid[top : top + tile_h, left : left + tile_w] = tile.repeat(scale, axis=0).repeat(scale, axis=1)

    from PIL import Image

    picture = Image.fromarray(grid)
    return _write_atomically(Path(path), lambda handle: picture.save(handle, format="PNG"))


def _grid_arrays(
    images: torch.Tensor | np.ndarray, masks: torch.Tensor | np.ndarray, preds: torch.Tensor | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, masks and predicted classes as NumPy arrays of matching shapes (logits are argmax-ed)."""
    images_np = to_numpy(images)
    masks_np = to_numpy(masks).astype(np.int64)
    preds_np = to_numpy(preds)
    if preds_np.ndim == 4:
        preds_np = preds_np.argmax(axis=1)
    preds_np = preds_np.astype(np.int64)
    if images_np.ndim != 4 or images_np.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, H, W], got shape {images_np.shape}")
    n, _, height, width = images_np.shape
    expected = (n, height, width)
    if masks_np.shape != expected or preds_np.shape != expected:
        raise ValueError(
            f"masks and preds must be [N, H, W] = {list(expected)} to match the images, "
            f"got {list(masks_np.shape)} and {list(preds_np.shape)}"
        )
    if n == 0:
        raise ValueError("no samples to draw")
    return images_np, masks_np, preds_np


def save_metric_curves(
    history: Sequence[Mapping[str, Any]],
    path: str | Path,
    keys: Sequence[str] | None = None,
) -> Path:
    """Write a PNG of metric curves from a list of logged records.

    Each record is a mapping such as ``{"epoch": 3, "train/loss": 0.2,
    "val/mean_iou": 0.91}``; records may hold different keys (a training loss
    every step, validation metrics every epoch). The x axis is ``epoch`` when
    record has its own, else ``step``, else the record's position. Keys that
    share a name after the split prefix share a panel: ``train/loss`` with
    ``val/loss``, ``val/iou/circle`` with ``val/iou/triangle``.

    Args:
        history: the records, in logging order.
        path: the PNG to write; parent directories are created.
        keys: which metrics to plot; by default every numeric key but the x axis.

    Returns:
        The path written.
    """
    x_key = _x_axis(history)
    keys = _curve_keys(history, keys)
    panels: dict[str, list[str]] = {}
    for key in keys:
        panels.setdefault(_panel(key), []).append(key)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.0 * columns, 3.0 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (title, members) in zip(axes, panels.items(), strict=False):
        for key in members:
            points = [
                (record[x_key] if x_key else position, float(record[key]))
                for position, record in enumerate(history)
                if key in record and _is_number(record[key])
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel(x_key or "record")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    return _write_atomically(Path(path), lambda handle: figure.savefig(handle, format="png", dpi=100))


def _curve_keys(history: Sequence[Mapping[str, Any]], keys: Sequence[str] | None) -> Sequence[str]:
    """The metrics to plot: ``keys`` (each must be logged somewhere), or every numeric one but the x axis."""
    if keys is None:
        keys = sorted(
            {key for record in history for key, value in record.items() if key not in _X_KEYS and _is_number(value)}
        )
    else:
        missing = [key for key in keys if not any(key in record for record in history)]
        if missing:
            present = sorted({key for record in history for key in record})
            raise ValueError(f"no record holds {missing}; keys present: {present}")
    if not keys:
        raise ValueError("nothing to plot: the history holds no numeric metrics")
    return keys


def _x_axis(history: Sequence[Mapping[str, Any]]) -> str | None:
    """``epoch`` when every record has a distinct one, else ``step`` when every record has one."""
    have = [key for key in _X_KEYS if history and all(key in record for record in history)]
    if "epoch" in have and ("step" not in have or len({r["epoch"] for r in history}) == len(history)):
        return "epoch"
    return "step" if "step" in have else None


def _panel(key: str) -> str:
    """The panel a key is drawn in: its name without the split, ``val/iou/circle`` -> ``iou``."""
    parts = key.split("/")
    return parts[1] if len(parts) > 1 else parts[0]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def _write_atomically(path: Path, write: Callable[[Any], object]) -> Path:
    """Call ``write`` on a temporary file next to ``path``, then move it into place; return ``path``."""
    atomic_write(path, write)
    return path
