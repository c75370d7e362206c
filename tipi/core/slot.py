"""The slot a job of a ``launcher=pool`` multirun runs in: which GPU, or which share of the cores.

The pool launcher (:mod:`tipi._hydra.launchers.pool`) claims a slot in the
job's own process before the job's config is composed, and describes it in
the ``TIPI_SLOT`` environment variable (JSON): ``kind`` (``gpu`` or ``cpu``),
``devices`` (the GPUs, as the machine numbers them, that the job sees as
``cuda:0``...), ``index`` (the slot's number on its device), ``threads`` (the
cores the job may keep busy) and ``host``. The run record keeps it in
``run.json`` under ``slot``; the data permanence keeps its loader workers
within ``threads``. Outside a pool job there is no slot and nothing changes.
"""

from __future__ import annotations

import json
import os
from typing import Any

SLOT_ENV = "TIPI_SLOT"


def current_slot() -> dict[str, Any] | None:
    """The slot this process runs in, or None outside a pool job (or if the variable is unreadable)."""
    raw = os.environ.get(SLOT_ENV)
    if not raw:
        return None
    try:
        slot = json.loads(raw)
    except ValueError:
        return None
    return slot if isinstance(slot, dict) else None


def slot_threads() -> int | None:
    """The cores this process's slot may keep busy (torch threads plus loader workers), or None outside a slot."""
    slot = current_slot()
    threads = slot.get("threads") if slot else None
    return int(threads) if isinstance(threads, int) and threads > 0 else None
