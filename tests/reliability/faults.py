"""``python -m tests.reliability.faults FAULT ARG -- TIPI ARGS...``: a real tipi run with one fault injected.

Faults are injected at the boundary between tipi and the OS (``torch.save``
and the metrics file object), never inside tipi's own logic:

``hang-in-save N``
    the N-th write of ``last.pt`` stops half-way: half of the bytes are in
    the temp file, ``<run dir>/HUNG`` appears, and the process sleeps until
    the test SIGKILLs it. This puts a SIGKILL exactly mid-checkpoint-write.
``metrics-disk-full N``
    ``metrics.jsonl`` takes N lines, then every write fails with ENOSPC.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Any


def hang_in_save(nth: int) -> None:
    """Patch ``torch.save`` so the ``nth`` save of ``last.pt`` hangs half-written."""
    import torch

    real_save = torch.save
    saves = 0

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal saves
        name = Path(getattr(f, "name", str(f))).name
        if not name.startswith(".last.pt."):
            return real_save(obj, f, *args, **kwargs)
        saves += 1
        if saves < nth:
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        (Path(f.name).parent.parent / "HUNG").write_text(f.name)
        time.sleep(600)  # the test SIGKILLs us here
        return None

    torch.save = save


def metrics_disk_full(lines_that_fit: int) -> None:
    """Make ``metrics.jsonl`` a file that fills up after ``lines_that_fit`` lines."""
    import builtins

    from tests.reliability.doubles import FullDiskFile
    from tipi.permanences import metrics_logger

    def open_full(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = builtins.open(file, mode, *args, **kwargs)  # noqa: SIM115 - handed to the caller, as open() does
        if str(file).endswith("metrics.jsonl") and "a" in mode:
            return FullDiskFile(handle, lines_that_fit)
        return handle

    metrics_logger.open = open_full  # type: ignore[attr-defined]  # the module's `open`, shadowing the builtin


FAULTS = {"hang-in-save": hang_in_save, "metrics-disk-full": metrics_disk_full}


def main(argv: list[str]) -> None:
    """Install the fault named by ``argv[0]`` with ``argv[1]``, then run tipi with the rest after ``--``."""
    fault, arg, separator, *tipi_args = argv
    assert separator == "--", "usage: faults FAULT ARG -- TIPI ARGS..."
    FAULTS[fault](int(arg))
    from tipi.cli import main as tipi_main

    sys.argv = ["tipi", *tipi_args]
    tipi_main()


if __name__ == "__main__":
    main(sys.argv[1:])
