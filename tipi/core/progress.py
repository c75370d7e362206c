"""The progress handle the engine uses where a pipeline shows no progress."""

from __future__ import annotations

from typing import Any


class NullTask:
    """The progress handle used where a pipeline shows no progress: every call does nothing.

    tipi's one do-nothing handle: the executor's bars without a ``progress``
    permanence, the built-in processes' bars, and every bar of ``progress=none``
    (re-exported as ``tipi.permanences.progress.NULL_TASK``). One shared
    instance, :data:`NULL_TASK`, so a disabled bar costs a method call and no allocation.
    """

    __slots__ = ()
    name = description = path = status = ""
    total: float | None = None
    completed = 0.0
    depth = 0

    @property
    def postfix(self) -> dict[str, object]:
        """Always empty."""
        return {}

    def advance(self, n: float = 1) -> None:
        """Do nothing."""

    def update(self, **_: Any) -> None:
        """Do nothing."""

    def __enter__(self) -> NullTask:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


NULL_TASK = NullTask()
