"""``python -m tipi --help``: every process and permanence with its parameters, types and defaults.

Hydra renders its help from a template whose placeholders are fixed
(``$CONFIG``, ``$APP_CONFIG_GROUPS``, ...); the seam (:func:`wrap_get_help`) wraps
that rendering (``Hydra.get_help``) to add this section before the footer, read from
the composed config's targets the way the composition read them
(:mod:`tipi.params.signature`). So ``python -m tipi +experiment=seg --help``
shows the pipeline that command would run. The template itself stays plain
Hydra: a Hydra app without tipi (the start-up benchmark's bare app) still
renders it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tipi._hydra.nodes import target_nodes, target_of
from tipi.params.target import Param, TargetInfo

__all__ = ["params_help", "with_params_section", "wrap_get_help"]

HEADING = """== Processes and permanences ==
Every parameter of a process or permanence is a config key with its default, listed or
not in the config above; set it without +: processes.train.epochs=5, data.batch_size=8
(a permanence the pipeline lists by reference is set at the key it refers to).
"config:" marks a value the config sets in place of the default.
"""
_UNSET = object()


def format_value(value: Any) -> str:
    """A value as one would type it in an override (``null``, ``true``, ``val/mean_iou``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value else "''"
    if isinstance(value, (int, float, list, dict)):
        return str(value)
    return repr(value)


def _configured(node: DictConfig, name: str) -> Any:
    """The node's raw value for ``name`` (interpolations unresolved), or ``_UNSET``."""
    child = node._get_node(name, validate_access=False)  # None when absent; nothing resolved
    if child is None:
        return _UNSET
    if isinstance(child, DictConfig) or OmegaConf.is_list(child):
        return OmegaConf.to_container(child, resolve=False)
    return child._value()


def _param_line(param: Param, node: DictConfig, width: int) -> str:
    head = f"{param.name}: {param.type_text}" if param.type_text else param.name
    default = "(required)" if param.required else f"= {format_value(param.default)}"
    line = f"    {head.ljust(width)} {default}"
    configured = _configured(node, param.name)
    if configured is not _UNSET and (param.required or configured != param.default):
        line += f"   config: {format_value(configured)}"
    return line


def _target_block(key: str, listed_as: str, target: str | None, info: TargetInfo | None, node: DictConfig) -> str:
    title = key if key == listed_as else f"{key} ({listed_as})"
    lines = [f"{title}: {target}"]
    if info is None:
        lines.append("    (its signature cannot be read: run without --help to see why)")
        return "\n".join(lines)
    if info.doc:
        lines.append(f"  {info.doc}")
    width = max((len(f"{p.name}: {p.type_text}") for p in info.params), default=0)
    lines += [_param_line(p, node, width) for p in info.params]
    if info.accepts_any:
        lines.append("    ... and any other key (**kwargs)")
    return "\n".join(lines)


def params_help(cfg: DictConfig) -> str:
    """The help section for ``cfg``'s processes and permanences."""
    blocks = [_target_block(e.key, e.listed_as, target_of(e.node), e.info, e.node) for e in target_nodes(cfg)]
    return "\n".join(blocks) if blocks else "(none configured)"


def with_params_section(text: str, footer: str, cfg: DictConfig) -> str:
    """Hydra's help ``text`` with the processes-and-permanences section before ``footer``."""
    section = f"{HEADING}\n{params_help(cfg)}\n"
    at = text.rfind(footer) if footer else -1
    if at < 0:
        return f"{text}\n{section}"
    return f"{text[:at]}{section}\n{text[at:]}"


def wrap_get_help(get_help: Callable[..., str]) -> Callable[..., str]:
    """``Hydra.get_help``: Hydra's help, with every process and permanence and its parameters."""

    def get_help_with_params(self: Any, help_cfg: DictConfig, cfg: DictConfig, args_parser: Any, resolve: bool) -> str:
        text = get_help(self, help_cfg, cfg, args_parser, resolve)
        return with_params_section(text, str(help_cfg.get("footer") or ""), cfg)

    return get_help_with_params
