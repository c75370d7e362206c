"""The command line as Hydra reads it: overrides checked one by one, and whether this is a multirun."""

from __future__ import annotations

from tipi.core.errors import ConfigError


def check_overrides(argv: list[str]) -> None:
    """Parse the command line's overrides as Hydra will; a ``ConfigError`` naming a malformed one.

    Hydra's own message ("no viable alternative at input '[1,'") does not say
    which override it is about.
    """
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    args, _unknown = get_args_parser().parse_known_args(argv)
    for override in args.overrides:
        try:
            OverridesParser.create().parse_overrides([override])
        except OverrideParseException as exc:
            key, _, value = override.partition("=")
            key = key.lstrip("+~")
            if any(ord(c) > 127 for c in value) and not value.startswith(("'", '"')):
                raise ConfigError(
                    f"cannot parse the override '{override}': a value with characters outside ASCII must be quoted",
                    key=key,
                    hint=f"Quote the value, and the override for the shell: \"{key}='{value}'\"",
                ) from None
            reason = exc.message.splitlines()[0]
            raise ConfigError(
                f"cannot parse the override '{override}': {reason}",
                key=key,
                hint="Check its brackets and quotes (shell-quote lists: 'key=[1,2]'); the grammar: "
                "https://hydra.cc/docs/advanced/override_grammar/basic/",
            ) from None


def is_multirun() -> bool:
    """True inside a job of a Hydra multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
