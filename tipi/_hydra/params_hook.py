"""Signature defaults become config keys between Hydra's composition and its command-line overrides.

Hydra composes the config from the defaults list, sets it to struct mode and
then applies the command line's overrides; an override of a key the YAML does
not list fails there (``Key 'lr' is not in struct``). Hydra 1.3 has no public
hook at that point, so the seam wraps the one function that applies
the overrides (``ConfigLoaderImpl._apply_overrides_to_config``). Every path
that composes a job's config goes through it: a single run, ``--cfg``,
``--help``, each job of a multirun (basic sweeper, Optuna, tipi's launchers,
also in a submitit worker), and each run of a WandB sweep (Hydra's compose
API). Before the overrides apply, the wrapper

1. adds each parameter of every ``processes.*`` and ``permanences.*`` target
   that the node does not list, with its default (``???`` when it has none),
   so ``--cfg job``, ``.hydra/config.yaml`` and the run record show the values
   the run uses;
2. refuses an override of a parameter the target does not have, naming the
   key, the valid parameters and a "did you mean" (Hydra would only say
   "not in struct, use +");
3. lets ``+key=v`` set a parameter that is now listed (it used to be the way
   to set an unlisted one, so it keeps working).

A node whose target cannot be read (it does not import) is left as written,
and its overrides go through: the builder reports the real problem, with its
config key, before anything runs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from tipi._hydra.nodes import SECTIONS, TargetNode, target_nodes
from tipi.core.errors import ConfigError
from tipi.params.target import config_default

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override

__all__ = ["UnknownParameter", "apply_overrides", "check_key", "prepare", "wrap_apply_overrides"]

_SPECIAL = re.compile(r"^_.+_$")  # _target_, _recursive_, ...: Hydra's keys, not parameters


def _unknown_parameter_class() -> type[ConfigError]:
    from hydra.errors import CompactHydraException

    class UnknownParameter(ConfigError, CompactHydraException):
        """An override names a parameter its target does not have.

        A ``ConfigError`` for tipi, and a compact Hydra error for Hydra, which
        then prints this message instead of a traceback.
        """

    return UnknownParameter


UnknownParameter: type[ConfigError] = _unknown_parameter_class()


def _fill(entry: TargetNode, *, required: bool = True) -> None:
    """Add the parameters the node does not list, with their defaults (``???`` for ``required`` ones)."""
    if entry.info is None:
        return
    listed = set(entry.node.keys())  # not "in node": DictConfig.__contains__ resolves interpolations
    missing = [p for p in entry.info.params if p.name not in listed and (required or not p.required)]
    if not missing:
        return
    with open_dict(entry.node):
        for param in missing:
            fits, value = config_default(param)
            if not fits:
                continue  # not representable in a config: the target keeps its own default
            try:
                entry.node[param.name] = value
            except OmegaConfBaseException:
                continue  # a typed (structured) node that refuses it: as before, the builder judges


def _refuse(key: str, word: str, valid: Sequence[str], what: str, hint: str | None = None) -> ConfigError:
    error = UnknownParameter.unknown(key, word, valid, what)
    if hint and not error.hint:
        error.hint = hint
    return error


def _check_section(key: str, cfg: DictConfig, added: set[str]) -> None:
    """``processes.trian.lr=1``: a process (or permanence) that does not exist, with a "did you mean".

    ``added``: nodes that ``+`` overrides on the same command line add.
    """
    parts = key.split(".")
    if len(parts) < 2 or parts[0] not in SECTIONS or ".".join(parts[:2]) in added:
        return
    parent = cfg._get_node(parts[0]) if parts[0] in cfg else None
    if isinstance(parent, DictConfig) and not parent._is_none() and parts[1] not in parent:
        what = SECTIONS[parts[0]]
        raise _refuse(
            f"{parts[0]}.{parts[1]}",
            parts[1],
            [str(k) for k in parent],
            what,
            hint=f"To add a {what}, use +{parts[0]}.{parts[1]}._target_=...",
        )


def _owner(key: str, by_key: dict[str, TargetNode]) -> tuple[TargetNode, str, list[str]] | None:
    """The target node an override key reaches into, the parameter it names and the keys below that."""
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        entry = by_key.get(".".join(parts[:i]))
        if entry is not None:
            return entry, parts[i], parts[i + 1 :]
    return None


def _rewrite(
    override: Override, by_key: dict[str, TargetNode], cfg: DictConfig, added: set[str], resuming: bool = False
) -> Override:
    """The override as it should apply; raises for a parameter the target does not have.

    ``resuming`` (``resume=<dir>`` on the command line): an override of a process or permanence
    the fresh composition lacks is meant for the resumed run's stored config, where the runner
    applies it (or refuses it); here it is only carried.
    """
    from hydra.core.override_parser.types import OverrideType

    if override.is_hydra_override() or override.package is not None or override.is_delete():
        return override
    owner = _owner(override.key_or_group, by_key)
    if owner is None:
        if override.type is OverrideType.CHANGE:
            if resuming and override.key_or_group.split(".")[0] in SECTIONS:
                return dataclasses.replace(override, type=OverrideType.FORCE_ADD)
            _check_section(override.key_or_group, cfg, added)
        return override
    entry, name, below = owner
    key = ".".join([entry.key, name, *below])
    if key != override.key_or_group:  # permanences.data.x sets data.x: the node the reference points to
        override = dataclasses.replace(override, key_or_group=key)
    info = entry.info
    if info is None or _SPECIAL.match(name):
        return override
    if info.get(name) is not None:
        if override.is_add() and not below:  # +key=v: a parameter is always there now, so this sets it
            override = dataclasses.replace(override, type=OverrideType.FORCE_ADD)
        return override
    if override.type is OverrideType.CHANGE and name not in entry.node and not info.accepts_any:
        raise _refuse(f"{entry.key}.{name}", name, info.names, "parameter")
    return override


def check_key(key: str, cfg: DictConfig) -> None:
    """Refuse ``key`` as an override of ``cfg`` would be refused: a process, permanence or parameter that is not there.

    For keys a later composition will set (a sweep's parameter names), so the
    mistake is reported before the first run rather than by each.
    """
    entries = list(target_nodes(cfg))
    owner = _owner(key, {e.listed_as: e for e in entries} | {e.key: e for e in entries})
    if owner is None:
        _check_section(key, cfg, set())
        return
    entry, name, _ = owner
    info = entry.info
    if (
        info is not None
        and not _SPECIAL.match(name)
        and info.get(name) is None
        and name not in entry.node
        and not info.accepts_any
    ):
        raise _refuse(f"{entry.key}.{name}", name, info.names, "parameter")


def _override_targets(overrides: Sequence[Override]) -> dict[str, str]:
    """Node key -> the ``_target_`` an override sets (``processes.train._target_=my.Fn``)."""
    targets = {}
    for override in overrides:
        if override.is_delete() or override.is_sweep_override():
            continue
        key = override.key_or_group
        value = override.value() if key.endswith("._target_") else None
        if isinstance(value, str):
            targets[key.removesuffix("._target_")] = value
    return targets


def _check_removed(overrides: Sequence[Override]) -> None:
    """``~processes.train processes.train.epochs=3``: a key set inside a node the same command removes."""
    removed = {o.key_or_group: o.input_line for o in overrides if o.is_delete() and not o.is_sweep_override()}
    for override in overrides:
        if override.is_delete():
            continue
        node = next((r for r in removed if override.key_or_group.startswith(f"{r}.")), None)
        if node is not None:
            raise ConfigError(
                f"'{override.input_line}' sets a key in {node}, which '{removed[node]}' in the same command removes",
                key=node,
                hint=f"Drop one of the two: keep {node} and set its key, or remove it with {removed[node]} alone.",
            )


def prepare(overrides: Sequence[Override], cfg: DictConfig) -> tuple[list[Override], list[DictConfig]]:
    """Fill signature defaults into ``cfg``; the overrides to apply and the nodes to open while they do."""
    _check_removed(overrides)
    entries = list(target_nodes(cfg, _override_targets(overrides)))
    for entry in entries:
        _fill(entry)
    by_key = {e.listed_as: e for e in entries} | {e.key: e for e in entries}
    added = {".".join(o.key_or_group.split(".")[:2]) for o in overrides if o.is_add() or o.is_force_add()}
    resuming = any(
        o.key_or_group == "resume" and not o.is_delete() and o.value() not in (None, "", "null")
        for o in overrides
        if not o.is_sweep_override()
    )
    rewritten = [_rewrite(o, by_key, cfg, added, resuming) for o in overrides]
    return rewritten, [e.node for e in entries]


@contextmanager
def _opened(nodes: Sequence[DictConfig]) -> Iterator[None]:
    """Nodes accept new keys: ``**kwargs`` targets, unreadable targets, defaults a config cannot hold."""
    flags = [(node, node._get_node_flag("struct")) for node in nodes]
    for node, _ in flags:
        OmegaConf.set_struct(node, False)
    try:
        yield
    finally:
        for node, flag in flags:
            OmegaConf.set_struct(node, flag)


def apply_overrides(
    original: Callable[[list[Override], DictConfig], None], overrides: list[Override], cfg: DictConfig
) -> None:
    """Hydra's override step (``original``), with the signatures' defaults filled in before and after it."""
    rewritten, nodes = prepare(overrides, cfg)
    with _opened(nodes):
        original(rewritten, cfg)
    for entry in target_nodes(cfg):  # nodes the overrides added or replaced get their defaults too
        _fill(entry, required=False)  # a missing required one stays the builder's to name


def wrap_apply_overrides(
    apply: Callable[[list[Override], DictConfig], None],
) -> Callable[[list[Override], DictConfig], None]:
    """``ConfigLoaderImpl._apply_overrides_to_config``: Hydra's override step, signature defaults filled in."""

    def apply_with_signatures(overrides: list[Override], cfg: DictConfig) -> None:
        apply_overrides(apply, overrides, cfg)

    return apply_with_signatures
