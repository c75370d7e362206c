"""Files written so that a reader (or a run killed mid-write) never sees half of one.

One home for every atomic write: run.json, metrics summaries and manifests
(``atomic_write_text``), checkpoints (``torch.save`` through ``atomic_write``)
and figures. It imports nothing of tipi, so the engine and the plain image
code (``tipi.vision``) both use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` on a temp file beside ``path``, fsync it, then rename it over ``path``.

    The temp file is removed whatever happens; an ``OSError`` (a full disk)
    propagates with the previous ``path`` left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def free_space(path: Path) -> str:
    """The free space on ``path``'s file system (or its nearest existing parent's), readable: ``12.0 KiB``."""
    import shutil

    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = float(shutil.disk_usage(probe).free)
    except OSError:
        return "unknown"
    if free < 1024:
        return f"{free:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        free /= 1024
        if free < 1024 or unit == "GiB":
            break
    return f"{free:.1f} {unit}"
