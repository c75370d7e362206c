"""``python -m tipi``: Hydra composes the config, the runner runs it, Rich shows errors.

Set ``TIPI_TRACEBACK=1`` (or Hydra's ``HYDRA_FULL_ERROR=1``) to see full tracebacks.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import hydra
from omegaconf import DictConfig

from tipi.core.config import CONFIG_NAME, CONFIG_PATH, normalize_overrides, register_resolvers
from tipi.core.errors import Interrupted, TipiError


def _full_traceback_requested() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("TIPI_TRACEBACK", "HYDRA_FULL_ERROR"))


def report_error(exc: BaseException) -> None:
    """One short, readable message on stderr; the full traceback only when asked for."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
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
    if not _full_traceback_requested():
        console.print("[dim]Set TIPI_TRACEBACK=1 for the full traceback.[/]")


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def task(cfg: DictConfig) -> float | None:
    """Hydra's task function: run one pipeline and return its objective."""
    from tipi.core.runner import PipelineRunner

    try:
        return PipelineRunner(cfg).run()
    except Interrupted as exc:
        print(f"tipi: {exc}; state checkpointed, cleanup done", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:
        if _full_traceback_requested():
            raise
        report_error(exc)
        if _is_multirun():
            # Hydra marks this job failed, runs the others, then raises this: one line, not a traceback.
            from hydra.errors import CompactHydraException

            raise CompactHydraException(f"a job failed ({type(exc).__name__}); see the multirun summary") from exc
        raise SystemExit(1) from None


def check_overrides(argv: list[str]) -> None:
    """Parse the command line's overrides as Hydra will; a ``ConfigError`` naming a malformed one.

    Hydra's own message ("no viable alternative at input '[1,'") does not say
    which override it is about.
    """
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from tipi.core.errors import ConfigError

    args, _unknown = get_args_parser().parse_known_args(argv)
    for override in args.overrides:
        try:
            OverridesParser.create().parse_overrides([override])
        except OverrideParseException as exc:
            key = override.split("=", 1)[0].lstrip("+~")
            reason = exc.message.splitlines()[0]
            raise ConfigError(f"cannot parse the override '{override}': {reason}", key=key,
                              hint="Check its brackets and quotes (shell-quote lists: 'key=[1,2]'); the grammar: "
                                   "https://hydra.cc/docs/advanced/override_grammar/basic/") from None


def main() -> Any:
    """Console entry point."""
    register_resolvers()
    sys.argv[1:] = normalize_overrides(sys.argv[1:])
    try:
        check_overrides(sys.argv[1:])
    except TipiError as exc:
        report_error(exc)
        raise SystemExit(1) from None
    return hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)(task)()
