"""``python -m tipi``: Hydra composes the config, the runner runs it, Rich shows errors.

Set ``TIPI_TRACEBACK=1`` (or Hydra's ``HYDRA_FULL_ERROR=1``) to see full tracebacks.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from tipi import compose_once, hydra_errors
from tipi.core.config import CONFIG_NAME, CONFIG_PATH, normalize_overrides, register_resolvers
from tipi.core.errors import Interrupted, TipiError
from tipi.params import install as install_params


def _full_traceback_requested() -> bool:
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
    if not _full_traceback_requested():
        console.print("[dim]Set TIPI_TRACEBACK=1 for the full traceback.[/]")


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run(cfg: DictConfig) -> float | None:
    """One run, or a WandB sweep when the config has a ``sweep`` key; the objective."""
    if cfg.get("sweep") is not None:
        from hydra.core.hydra_config import HydraConfig

        from tipi.sweeps import run_sweep

        sweep_dir = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path.cwd()
        return run_sweep(cfg, sweep_dir)
    # the plain runner, or (distributed=ddp) this rank's runner or tipi's own start of the ranks
    from tipi.distributed.start import runner_for

    return runner_for(cfg).run()


def task(cfg: DictConfig) -> float | None:
    """Hydra's task function: run one pipeline (or a sweep) and return its objective."""
    try:
        return run(cfg)
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
            raise ConfigError(
                f"cannot parse the override '{override}': {reason}",
                key=key,
                hint="Check its brackets and quotes (shell-quote lists: 'key=[1,2]'); the grammar: "
                "https://hydra.cc/docs/advanced/override_grammar/basic/",
            ) from None


LAUNCHERS_MODULE = "hydra_plugins.tipi_launcher.launchers"
LAUNCHERS = ("BasicLauncher", "LocalLauncher", "SlurmLauncher")


def register_launchers() -> None:
    """Make tipi's launchers known to Hydra however tipi was installed.

    Hydra finds plugins by scanning the ``hydra_plugins`` namespace package's
    folders, which pip's default editable install (a PEP 660 import hook) does
    not expose; registering the classes through Hydra's public
    ``Plugins.register`` works for every install. A scan that found them
    already makes this a dictionary look-up.
    """
    import importlib

    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()
    if all(f"{LAUNCHERS_MODULE}.{name}" in plugins.class_name_to_class for name in LAUNCHERS):
        return
    module = importlib.import_module(LAUNCHERS_MODULE)
    for name in LAUNCHERS:
        plugins.register(getattr(module, name))


def main() -> Any:
    """Console entry point."""
    register_resolvers()
    if {"-m", "--multirun"} & set(sys.argv[1:]):  # only a multirun instantiates a launcher
        register_launchers()
    else:
        compose_once.install()  # Hydra composes a single run's config twice; once is enough
    hydra_errors.install(report_error, _full_traceback_requested)
    install_params()  # every parameter of a process or permanence is a config key (tipi.params)
    sys.argv[1:] = normalize_overrides(sys.argv[1:])
    try:
        check_overrides(sys.argv[1:])
    except TipiError as exc:
        report_error(exc)
        raise SystemExit(1) from None
    return hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)(task)()
