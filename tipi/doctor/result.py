"""What one check found: a status, one line of detail and, when something is wrong, one line of remedy."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

GIB = 2**30


class Status(StrEnum):
    """How a check came out."""

    OK = "ok"
    WARNING = "warning"  # works, but not as a researcher would want (offline WandB, little free disk)
    FAILED = "failed"
    SKIPPED = "skipped"  # does not apply to this machine (no CUDA device, no SLURM)


@dataclass(frozen=True)
class CheckResult:
    """One row of the doctor's table.

    Args:
        name: the row's name, e.g. ``cuda:0`` or ``smoke cpu``.
        status: ok, warning, failed or skipped.
        detail: one line: what was found.
        remedy: one line: what to do about it (empty when nothing needs doing).
        groups: what ``--require`` names to demand this row (``cuda``, ``slurm``, ...).
        seconds: how long the check took.
    """

    name: str
    status: Status
    detail: str
    remedy: str = ""
    groups: tuple[str, ...] = ()
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The row as plain JSON-able values."""
        data = asdict(self)
        data["status"] = str(self.status)
        data["groups"] = list(self.groups)
        data["seconds"] = round(self.seconds, 3)
        return data


Groups = str | tuple[str, ...]


def _groups(group: Groups) -> tuple[str, ...]:
    return (group,) if isinstance(group, str) else tuple(group)


def ok(name: str, detail: str, group: Groups) -> CheckResult:
    """An ok row."""
    return CheckResult(name, Status.OK, detail, groups=_groups(group))


def warning(name: str, detail: str, remedy: str, group: Groups) -> CheckResult:
    """A warning row with its remedy."""
    return CheckResult(name, Status.WARNING, detail, remedy, groups=_groups(group))


def failed(name: str, detail: str, remedy: str, group: Groups) -> CheckResult:
    """A failed row with its remedy."""
    return CheckResult(name, Status.FAILED, detail, remedy, groups=_groups(group))


def skipped(name: str, detail: str, group: Groups, remedy: str = "") -> CheckResult:
    """A skipped row: the reason is the detail; the remedy says how to make it apply, if that is wanted."""
    return CheckResult(name, Status.SKIPPED, detail, remedy, groups=_groups(group))
