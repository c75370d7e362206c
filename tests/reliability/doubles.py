"""Models and file objects that fail on purpose, for the fault tests.

They are imported by real ``python -m tipi`` runs (``tests`` is on PYTHONPATH
there), as a user's own ``_target_`` would be.
"""

from __future__ import annotations

import errno
from typing import IO, Any

from tipi.vision.unet import UNet


class NaNAtStep(UNet):
    """A U-Net whose output is NaN at one training step (its ``nan_at_step``-th training forward)."""

    def __init__(self, nan_at_step: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nan_at_step = nan_at_step
        self.training_forwards = 0

    def forward(self, x: Any) -> Any:
        out = super().forward(x)
        if self.training:
            self.training_forwards += 1
            if self.training_forwards == self.nan_at_step:
                out = out * float("nan")
        return out


class FullDiskFile:
    """Wraps a text file; every ``write`` after the first ``lines_that_fit`` fails as on a full disk."""

    def __init__(self, file: IO[str], lines_that_fit: int) -> None:
        self._file = file
        self._left = lines_that_fit

    def write(self, text: str) -> int:
        """Write, or raise ``OSError(ENOSPC)`` once the disk is 'full'."""
        if self._left <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        self._left -= 1
        return self._file.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)
