"""The checkpoint file: what ``last.pt`` / ``best.pt`` hold and how they are written, read and peeked at.

Written atomically (temp file, fsync, rename); loaded with ``weights_only=True``;
peeked at without torch (its plain entries, never running pickled code), so a
damaged file or another model's checkpoint is reported before a run starts.
Every RNG state travels with the weights, so a resumed run continues exactly.
"""

from __future__ import annotations

import errno
import io
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

from tipi.atomic import atomic_write, free_space
from tipi.core.errors import CheckpointError

RESTORE_HINT = "Remove it to start this run over, or restore it from best.pt."


def rng_states() -> dict[str, Any]:
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    assert not isinstance(keys, str)  # the legacy tuple: (name, key array, ...)
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file in the same directory, fsync, then rename over ``path``."""
    import torch

    kept = "the previous checkpoint is kept" if path.exists() else "no checkpoint was written"
    try:
        atomic_write(path, lambda f: torch.save(obj, f))
    except OSError as exc:
        free = f" ({free_space(path)} free on its file system)" if exc.errno == errno.ENOSPC else ""
        raise CheckpointError(
            f"cannot write {path}: {exc.strerror or exc}{free}; {kept}",
            key="permanences.network",
        ) from exc
    except RuntimeError as exc:
        if "unexpected pos" not in str(exc):  # torch's zip writer: a write that stopped short, its OSError lost
            raise
        raise CheckpointError(
            f"cannot write {path}: the write stopped short, most likely No space left on device "
            f"({free_space(path)} free on its file system); {kept}",
            key="permanences.network",
            hint="Free some space there, or write the run elsewhere (hydra.run.dir=<path>).",
        ) from exc


class _Opaque:
    """Stands in for every object a checkpoint's pickle names (tensors, OrderedDicts, ...)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        """Accept list items (pickle's APPENDS on an opaque object)."""

    def extend(self, values: Any) -> None:
        """Accept list items (pickle's APPENDS on an opaque object)."""


class _PeekUnpickler(pickle.Unpickler):
    """Reads the plain-Python parts of a pickle; imports nothing, so it runs no code."""

    def find_class(self, module: str, name: str) -> Any:
        return _Opaque

    def persistent_load(self, pid: Any) -> Any:
        return None  # a tensor's storage: not needed to read the checkpoint's plain entries


def _damaged(path: Path, why: str) -> CheckpointError:
    size = path.stat().st_size if path.exists() else 0
    return CheckpointError(
        f"{path} cannot be loaded ({size} bytes; {why}): it is truncated or corrupt", key="resume", hint=RESTORE_HINT
    )


def peek_checkpoint(path: Path) -> dict[str, Any] | None:
    """A checkpoint's plain entries (``state``, ``model_config``; tensors left out), read without torch.

    Raises ``CheckpointError`` when the file is not a readable checkpoint
    (empty, truncated, random bytes). Returns None when it cannot tell
    without torch (a checkpoint saved without CRCs), so ``load`` decides.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
            if not names:
                raise _damaged(path, "no data.pkl record")
            data = archive.read(names[0])
    except zipfile.BadZipFile as exc:
        if "CRC" in str(exc):
            return None
        raise _damaged(path, f"not a zip archive: {exc}") from exc
    except (OSError, EOFError, ValueError) as exc:
        raise _damaged(path, f"{type(exc).__name__}: {exc}") from exc
    try:
        content = _PeekUnpickler(io.BytesIO(data)).load()
    except Exception as exc:
        raise _damaged(path, f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(content, dict) or "model" not in content or "state" not in content:
        raise CheckpointError(
            f"{path} is not a tipi checkpoint (no 'model' and 'state' entries)", key="resume", hint=RESTORE_HINT
        )
    return content


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); a clear error if it is damaged."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        size = path.stat().st_size if path.exists() else 0
        raise CheckpointError(
            f"{path} cannot be loaded ({size} bytes; {type(exc).__name__}): it is truncated or corrupt",
            key="resume",
            hint=RESTORE_HINT,
        ) from exc
