"""Convert images between uint8 pixels and the normalised tensors the models see.

Every dataset in :mod:`tipi.vision` returns images scaled to ``[-1, 1]``
(``(x / 255 - 0.5) / 0.5``); the figures and the folder writer undo it here, so
the convention lives in one place.
"""

from __future__ import annotations

import numpy as np
import torch

MEAN = 0.5
STD = 0.5


def normalize_image(pixels: np.ndarray) -> torch.Tensor:
    """Turn a uint8 ``[H, W, 3]`` array into a float32 ``[3, H, W]`` tensor in ``[-1, 1]``."""
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] RGB array, got shape {tuple(pixels.shape)}")
    image = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float()
    return (image / 255.0 - MEAN) / STD


def denormalize_image(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """Turn a normalised ``[3, H, W]`` image back into a uint8 ``[H, W, 3]`` array."""
    array = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"expected a [3, H, W] image, got shape {tuple(array.shape)}")
    pixels = (array * STD + MEAN) * 255.0
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0)
