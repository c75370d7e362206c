"""Convert images between uint8 pixels and the normalised tensors the models see.

Every dataset in :mod:`tipi.vision` returns images scaled to ``[-1, 1]``
(``(x / 255 - 0.5) / 0.5``); the figures and the folder writer undo it here, so
the convention lives in one place. torch is imported only by
:func:`normalize_image`, so figures can be drawn without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

MEAN = 0.5
STD = 0.5


def normalize_image(pixels: np.ndarray) -> torch.Tensor:
    """Turn a uint8 ``[H, W, 3]`` array into a float32 ``[3, H, W]`` tensor in ``[-1, 1]``."""
    import torch

    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] RGB array, got shape {tuple(pixels.shape)}")
    image = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float()
    return (image / 255.0 - MEAN) / STD


def to_numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    """A host numpy array from a tensor on any device, or from anything array-like."""
    if hasattr(array, "detach"):  # a torch.Tensor, recognised without importing torch
        return array.detach().cpu().numpy()
    return np.asarray(array)


def denormalize_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Turn a normalised ``[3, H, W]`` image back into a uint8 ``[H, W, 3]`` array."""
    array = to_numpy(image).astype(np.float32, copy=False)
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"expected a [3, H, W] image, got shape {tuple(array.shape)}")
    pixels = (array * STD + MEAN) * 255.0
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)
