"""One exception family for everything tipi reports to a user.

Modelled on ``hydra/errors.py``: every error a person can cause derives from
:class:`TipiError` and carries the config key it is about, so the CLI can show
one short message (``processes.train.epocs: ...``) instead of a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """Return the closest candidate to ``word``, or None when nothing is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


class TipiError(Exception):
    """Base of every error tipi reports; ``key`` names the config key at fault."""

    def __init__(self, message: str, *, key: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.hint = hint
        self.cleanup_errors: list[BaseException] = []

    def __str__(self) -> str:
        text = f"{self.key}: {self.message}" if self.key else self.message
        if self.hint:
            text += f"\n{self.hint}"
        return text


class ConfigError(TipiError):
    """The composed configuration cannot be turned into a pipeline."""

    @classmethod
    def unknown(cls, key: str, word: str, valid: Iterable[str], what: str = "value") -> ConfigError:
        """An unknown ``word`` at ``key``: list what is valid and suggest the closest."""
        valid = sorted(valid)
        guess = did_you_mean(word, valid)
        hint = f"Did you mean '{guess}'?" if guess else None
        listing = ", ".join(valid) if valid else "(none)"
        return cls(f"unknown {what} '{word}'. Valid: {listing}", key=key, hint=hint)


class PermanenceError(TipiError):
    """A permanence failed in one of its lifecycle hooks."""


class ProcessError(TipiError):
    """A process failed while executing."""


class DeviceError(ConfigError):
    """The requested device does not exist or is unusable."""


class DataError(ConfigError):
    """The configured data cannot be read."""


class CheckpointError(TipiError):
    """A checkpoint cannot be written or does not match this run."""


class TrainingDiverged(ProcessError):
    """The loss became NaN or infinite."""


class SweepError(ConfigError):
    """A sweep specification is invalid or not allowed."""


class Interrupted(BaseException):
    """A run was stopped by a signal (Ctrl-C, SIGTERM, SLURM preemption).

    A ``BaseException`` like ``KeyboardInterrupt`` so that ``except Exception``
    in user code does not swallow it.
    """

    def __init__(self, signum: int, *, requeue: bool = False) -> None:
        import signal

        self.signum = signum
        self.requeue = requeue
        super().__init__(f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """Shell convention: 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum
