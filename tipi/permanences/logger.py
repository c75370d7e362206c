"""The metrics logger: every logged metric lands in ``<run dir>/metrics.jsonl``, WandB or not."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from tipi.core.errors import TipiError
from tipi.core.permanence import Permanence


def to_float(value: Any) -> Any:
    """A plain Python number for tensors and NumPy scalars; other values unchanged."""
    item = getattr(value, "item", None)
    if callable(item):
        value = item()
    return value


class MetricsLogger(Permanence):
    """Appends one JSON line per ``log()`` call; keeps the latest value of each key in ``summary``.

    Subclasses (``WandBManager``) send the same metrics elsewhere too.
    """

    def __init__(self, filename: str = "metrics.jsonl") -> None:
        self.filename = filename
        self.summary: dict[str, Any] = {}
        self.step = 0
        self._file: IO[str] | None = None
        self.path: Path | None = None

    def initialize(self) -> None:
        """Open ``metrics.jsonl`` for appending (a resumed run continues the same file)."""
        self.path = self.controller.run_dir / self.filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = open(self.path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - lives for the run
        except OSError as exc:
            raise TipiError(f"cannot open {self.path} for writing: {exc.strerror}", key="permanences.logger",
                            hint="Check the output directory (hydra.run.dir) is writable.") from exc

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record ``metrics`` (numbers or 0-d tensors) at ``step`` (default: an internal counter)."""
        if step is None:
            step = self.step
            self.step += 1
        else:
            self.step = max(self.step, step + 1)
        values = {k: to_float(v) for k, v in metrics.items()}
        self.summary.update(values)
        self._write({"step": step, "time": round(time.time(), 3), **values})
        self._log_extra(values, step)

    def log_image(self, key: str, path: str | Path, step: int | None = None, caption: str | None = None) -> None:
        """Record that an image (a PNG under ``figures/``) was produced."""
        self._write({"step": self.step if step is None else step, "time": round(time.time(), 3),
                     "image": key, "path": str(path)})
        self._log_image_extra(key, Path(path), step, caption)

    def _write(self, row: dict[str, Any]) -> None:
        if self._file is None:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        try:
            self._file.write(json.dumps(clean) + "\n")
        except OSError as exc:
            raise TipiError(f"cannot write {self.path}: {exc.strerror}", key="permanences.logger",
                            hint="Free disk space; lines written so far are intact.") from exc

    # Hooks for loggers that also send metrics elsewhere.
    def _log_extra(self, values: dict[str, Any], step: int) -> None:
        """Send ``values`` to another backend. Default: nothing."""

    def _log_image_extra(self, key: str, path: Path, step: int | None, caption: str | None) -> None:
        """Send an image to another backend. Default: nothing."""

    def checkpoint(self) -> None:
        """Make the lines written so far durable."""
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as exc:
                raise TipiError(f"cannot flush {self.path}: {exc.strerror}", key="permanences.logger") from exc

    def get_state(self) -> dict[str, Any]:
        """The latest value of every metric."""
        return dict(self.summary)

    def cleanup(self) -> None:
        """Close the file."""
        if self._file is not None:
            file, self._file = self._file, None
            file.close()
