"""A config refused before anything ran leaves no directory behind.

Hydra creates the run's (or the multirun's) output directory and writes
``.hydra/`` and its log before tipi's gate sees the config; a refused config
would leave that behind, and ``tipi-runs`` would list it as a corrupt run.
:func:`discard_if_untouched` removes such a directory, and only such a one:
everything in it must be what Hydra (and tipi's run-dir lock) wrote.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from tipi.core.rundir import made_by_this_process

# What Hydra writes before the task runs, and the run directory's lock file.
HYDRA_ONLY = frozenset({".hydra", "tipi.log", ".tipi.lock", "multirun.yaml"})


def discard_if_untouched(path: Path) -> bool:
    """Remove ``path`` if this process claimed it and it holds nothing but Hydra's own files.

    Only a directory tipi's claim created in this process (the default
    ``outputs/<date>/<time>``, a fresh multirun directory) is ever removed, with
    the parents that claim created, if they are left empty; a directory the
    user named (``hydra.run.dir=...``) stays.
    """
    made = made_by_this_process(path)
    if not made:
        return False
    try:
        entries = list(path.iterdir())
    except OSError:
        return False
    if not entries or any(entry.name not in HYDRA_ONLY for entry in entries):
        return False
    hydra_dir = path / ".hydra"
    if hydra_dir.is_dir() and any(not p.name.endswith(".yaml") for p in hydra_dir.iterdir()):
        return False
    shutil.rmtree(path, ignore_errors=True)
    for parent in made[1:]:  # outputs/<date>/ when the claim made it and this was its only run
        with contextlib.suppress(OSError):
            parent.rmdir()
    return not path.exists()
