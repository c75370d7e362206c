"""One short, readable message for an error: Rich on a terminal, plain text elsewhere, the traceback on request.

Set ``TIPI_TRACEBACK=1`` (or Hydra's ``HYDRA_FULL_ERROR=1``) to see full tracebacks.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any

from tipi.core.errors import TipiError


def full_traceback_requested() -> bool:
    """True when the user asked for full tracebacks (``TIPI_TRACEBACK`` or ``HYDRA_FULL_ERROR``)."""
    return any(os.environ.get(v, "") not in ("", "0") for v in ("TIPI_TRACEBACK", "HYDRA_FULL_ERROR"))


def _no_escape(text: str) -> str:
    return text


class _PlainConsole:
    """Rich's ``print`` for a stderr that is no terminal: the same lines, markup dropped, Rich not imported."""

    _MARKUP = re.compile(r"\[/?(?:bold|dim|red|yellow|bold red)?\]")

    def print(self, text: str) -> None:
        sys.stderr.write(self._MARKUP.sub("", text).replace("\\[", "[") + "\n")


def report_error(exc: BaseException) -> None:
    """One short, readable message on stderr; the full traceback only when asked for.

    Rich colours it on a terminal; elsewhere (a log file, a test) it is plain text, and costs no Rich import.
    """
    console: Any = _PlainConsole()
    escape: Callable[[str], str] = _no_escape
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.markup import escape as rich_escape

        console, escape = Console(stderr=True, highlight=False, soft_wrap=True), rich_escape
    if isinstance(exc, TipiError):
        head = f"[bold red]Error[/] [bold]{escape(exc.key)}[/]: " if exc.key else "[bold red]Error[/]: "
        console.print(head + escape(exc.message))
        if exc.hint:
            console.print(f"[yellow]{escape(exc.hint)}[/]")
    else:
        console.print(f"[bold red]{type(exc).__name__}[/]: {escape(str(exc))}")
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            last = frames[-1]
            console.print(f"  at {escape(last.filename)}:{last.lineno} in {escape(last.name)}")
    for note in getattr(exc, "__notes__", []) or []:
        console.print(f"  [dim]{escape(note)}[/]")
    if not full_traceback_requested():
        console.print("[dim]Set TIPI_TRACEBACK=1 for the full traceback.[/]")
