"""The one error of the runs browser's commands."""

from __future__ import annotations

from tipi.core.errors import TipiError


class RunsError(TipiError):
    """A runs-browser command cannot do what was asked (a wrong path, nothing to resubmit)."""
