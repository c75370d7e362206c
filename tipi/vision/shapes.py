"""A procedurally generated segmentation dataset of circles, rectangles and triangles.

Every image holds 1 to ``max_shapes`` filled shapes on a noisy, softly shaded
background; the mask gives each pixel its class (0 background, 1 circle,
2 rectangle, 3 triangle), later shapes covering earlier ones. Colours are drawn
independently of the class, so a model must learn geometry, not colour; each
shape colour is kept well away from its background colour so the shapes are
always visible.

Sample ``i`` depends only on ``(seed, i)`` and the constructor arguments: a
dataset of 100 samples is the first 100 samples of one of 1000.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from tipi.vision.transforms import MEAN, STD

CLASS_NAMES: tuple[str, ...] = ("background", "circle", "rectangle", "triangle")

# Shape size as a fraction of the image side: the radius of a circle, half the
# long side of a rectangle, ~0.77 of the circumradius of a triangle. At 64 px
# this is 8 to 16 px, large enough for a small U-Net to tell corners from curves.
_MIN_SIZE = 0.125
_MAX_SIZE = 0.25
_TRIANGLE_SCALE = 1.3  # triangles cover less area than circles of the same radius
_MIN_COLOR_DISTANCE = 0.45  # Euclidean RGB distance (in [0, 1] units) from the background
_MIN_SHAPE_COLOR_DISTANCE = 0.3  # from the colours of the shapes placed before
_COLOR_CANDIDATES = 8
_CENTRE_CANDIDATES = 8
_CHUNK = 256  # samples rendered at once: bounds the temporary arrays to a few MB


@dataclass
class _Params:
    """Drawn parameters of ``n`` samples; per-shape arrays are ``[n, max_shapes]``."""

    num_shapes: np.ndarray  # [n] int
    background: np.ndarray  # [n, 3] base colour
    gradient: np.ndarray  # [n, 2] colour change across the image (y, x)
    kind: np.ndarray  # [n, k] class index 1..3
    cy: np.ndarray  # [n, k] centre, pixels
    cx: np.ndarray
    size: np.ndarray  # [n, k] pixels
    aspect: np.ndarray  # [n, k] rectangle short side / long side
    angle: np.ndarray  # [n, k] radians
    color: np.ndarray  # [n, k, 3]
    noise: np.ndarray  # [n, 3, H, W] standard normal


def _draw_sample(seed: int, index: int, image_size: int, max_shapes: int) -> tuple[np.ndarray, ...]:
    """Draw one sample's parameters, in :class:`_Params` order, from ``default_rng([seed, index])``."""
    rng = np.random.default_rng([seed, index])
    k = max_shapes
    num_shapes = np.asarray(rng.integers(1, max_shapes + 1))
    background = rng.uniform(0.15, 0.85, 3)
    gradient = rng.uniform(-0.15, 0.15, 2)
    kind = rng.integers(1, len(CLASS_NAMES), k)
    size = rng.uniform(_MIN_SIZE, _MAX_SIZE, k) * image_size
    # Keep the centre far enough from the border that most of the shape is
    # inside, and of a few candidate centres take the one farthest from the
    # shapes already placed: overlaps still happen, but a shape is rarely
    # hidden so much that its geometry is ambiguous.
    room = (image_size - 2 * size)[:, None, None]
    candidates_yx = size[:, None, None] + rng.random((k, _CENTRE_CANDIDATES, 2)) * room
    centres = np.empty((k, 2))
    for slot in range(k):
        if slot == 0:
            centres[0] = candidates_yx[0, 0]
            continue
        distance = np.linalg.norm(candidates_yx[slot, :, None] - centres[None, :slot], axis=-1)
        gap = (distance - size[:slot] - size[slot]).min(axis=1)
        centres[slot] = candidates_yx[slot, gap.argmax()]
    cy, cx = centres[:, 0], centres[:, 1]
    aspect = rng.uniform(0.5, 1.0, k)
    angle = rng.uniform(0.0, 2 * np.pi, k)
    # Take the first candidate colour far enough from the background and from
    # the shapes placed before (which it may overlap), else the best one.
    candidates = rng.random((k, _COLOR_CANDIDATES, 3))
    color = np.empty((k, 3))
    for slot in range(k):
        score = np.linalg.norm(candidates[slot] - background, axis=-1) / _MIN_COLOR_DISTANCE
        if slot:
            to_shapes = np.linalg.norm(candidates[slot, :, None] - color[None, :slot], axis=-1).min(axis=1)
            score = np.minimum(score, to_shapes / _MIN_SHAPE_COLOR_DISTANCE)
        good = score >= 1.0
        color[slot] = candidates[slot, good.argmax() if good.any() else score.argmax()]
    noise = rng.standard_normal((3, image_size, image_size), dtype=np.float32)
    return num_shapes, background, gradient, kind, cy, cx, size, aspect, angle, color, noise


def _draw(seed: int, indices: range, image_size: int, max_shapes: int) -> _Params:
    """Draw the parameters of the samples ``indices``, one generator per sample."""
    columns = list(zip(*(_draw_sample(seed, i, image_size, max_shapes) for i in indices), strict=True))
    return _Params(*(np.stack(column) for column in columns))


def _render(p: _Params, image_size: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise drawn parameters: float32 images ``[n, 3, H, W]`` in [0, 1] and uint8 masks."""
    n, k = p.kind.shape
    coords = np.arange(image_size, dtype=np.float32) + 0.5  # pixel centres
    yy = coords[None, :, None]
    xx = coords[None, None, :]

    # owner[s, y, x] = which shape slot covers the pixel, -1 for background.
    owner = np.full((n, image_size, image_size), -1, dtype=np.int8)
    for slot in range(k):
        active = slot < p.num_shapes
        for cls in range(1, len(CLASS_NAMES)):
            rows = np.flatnonzero(active & (p.kind[:, slot] == cls))
            if rows.size == 0:
                continue
            shape = (a[rows, slot, None, None].astype(np.float32) for a in (p.cy, p.cx, p.size, p.aspect, p.angle))
            inside = _inside(cls, yy, xx, *shape)
            owner[rows] = np.where(inside, np.int8(slot), owner[rows])

    covered = owner >= 0
    slot_index = np.maximum(owner, 0).astype(np.intp)
    kind = np.take_along_axis(p.kind, slot_index.reshape(n, -1), axis=1).reshape(owner.shape)
    masks = np.where(covered, kind, 0).astype(np.uint8)

    ramp = (coords / image_size - 0.5).astype(np.float32)
    shade = p.gradient[:, 0, None, None] * ramp[None, :, None] + p.gradient[:, 1, None, None] * ramp[None, None]
    images = np.empty((n, 3, image_size, image_size), dtype=np.float32)
    for c in range(3):
        shape_color = np.take_along_axis(p.color[:, :, c], slot_index.reshape(n, -1), axis=1)
        shape_color = shape_color.reshape(owner.shape)
        background = p.background[:, c, None, None] + shade
        images[:, c] = np.where(covered, shape_color, background)
    images += noise * p.noise
    np.clip(images, 0.0, 1.0, out=images)
    return images, masks


def _inside(
    cls: int,
    yy: np.ndarray,
    xx: np.ndarray,
    cy: np.ndarray,
    cx: np.ndarray,
    size: np.ndarray,
    aspect: np.ndarray,
    angle: np.ndarray,
) -> np.ndarray:
    """Boolean ``[m, H, W]``: which pixels fall inside shape ``cls`` (arguments ``[m, 1, 1]``)."""
    dy = yy - cy
    dx = xx - cx
    if cls == 1:  # circle
        return dy * dy + dx * dx <= size * size
    cos, sin = np.cos(angle), np.sin(angle)
    if cls == 2:  # rotated rectangle: half sides size and size * aspect
        u = cos * dx + sin * dy
        v = cos * dy - sin * dx
        return (np.abs(u) <= size) & (np.abs(v) <= size * aspect)
    # Equilateral triangle: inside all three edges, whose outward normals are
    # 120 degrees apart, each at the inradius (half the circumradius).
    inradius = 0.5 * _TRIANGLE_SCALE * size
    inside = np.ones(np.broadcast_shapes(dy.shape, dx.shape), dtype=bool)
    for turn in range(3):
        a = angle + turn * (2 * np.pi / 3)
        inside &= np.cos(a) * dx + np.sin(a) * dy <= inradius
    return inside


class ShapesDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Images of random circles, rectangles and triangles with per-pixel class masks.

    All samples are generated once, in the constructor (about 0.1 s for 1000
    images of 64x64), and held as tensors.

    Args:
        num_samples: how many images.
        image_size: side of the square images in pixels (at least 16).
        seed: selects the dataset; use different seeds for train and validation.
        noise: standard deviation of the Gaussian pixel noise, in units of the
            [0, 1] colour range.
        max_shapes: each image holds 1 to ``max_shapes`` shapes.

    Items are ``(image, mask)``: image float32 ``[3, H, W]`` in ``[-1, 1]``,
    mask int64 ``[H, W]`` with values in ``0..3`` (see :data:`CLASS_NAMES`).
    """

    class_names: tuple[str, ...] = CLASS_NAMES
    num_classes: int = len(CLASS_NAMES)

    def __init__(
        self,
        num_samples: int,
        image_size: int = 64,
        seed: int = 0,
        noise: float = 0.1,
        max_shapes: int = 4,
    ) -> None:
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        if max_shapes < 1:
            raise ValueError(f"max_shapes must be >= 1, got {max_shapes}")
        self.num_samples = num_samples
        self.image_size = image_size
        self.seed = seed
        self.noise = noise
        self.max_shapes = max_shapes

        images = np.empty((num_samples, 3, image_size, image_size), dtype=np.float32)
        masks = np.empty((num_samples, image_size, image_size), dtype=np.uint8)
        for start in range(0, num_samples, _CHUNK):
            stop = min(start + _CHUNK, num_samples)
            params = _draw(seed, range(start, stop), image_size, max_shapes)
            images[start:stop], masks[start:stop] = _render(params, image_size, noise)
        images -= MEAN
        images /= STD
        self.images = torch.from_numpy(images)
        # uint8 keeps memory low; items are widened to int64, what losses expect.
        self.masks = torch.from_numpy(masks)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.masks[index].long()

    def __repr__(self) -> str:
        return (
            f"ShapesDataset(num_samples={self.num_samples}, image_size={self.image_size}, "
            f"seed={self.seed}, noise={self.noise}, max_shapes={self.max_shapes})"
        )
