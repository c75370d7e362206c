"""tipi.params and the seam's params hook: signatures read as the builder reads them, filled in by composition."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from tests.conftest import REPO
from tipi import Permanence, pipeline_process
from tipi._hydra import installed
from tipi._hydra.help import params_help
from tipi.core.errors import ConfigError
from tipi.params import read_target
from tipi.params.signature import read_imported
from tipi.params.source import read_from_source
from tipi.params.target import config_default

HERE = "tests.unit.test_params"
BUILT_IN = sorted({line.split("_target_:", 1)[1].strip() for path in (REPO / "tipi" / "conf").rglob("*.yaml")
                   for line in path.read_text().splitlines() if "_target_: tipi.p" in line})


class Store(Permanence):
    """A store of things."""

    def __init__(self, size: int = 4, shape: tuple[int, int] = (2, 2), root: str = "${oc.env:HOME}",
                 names: list[str] | None = None, **extra: Any) -> None:
        self.size = size

    def cleanup(self) -> None:
        pass


class Needs(Permanence):
    """Has a required parameter."""

    def __init__(self, path: str) -> None:
        self.path = path

    def cleanup(self) -> None:
        pass


@pipeline_process
def fit(store: Store, epochs: int = 3, lr: float = 0.01, tags: list[str] | None = None) -> float:
    """Fit something.

    More text that the help leaves out.
    """
    return lr * epochs


def test_a_decorated_function_has_its_options_not_its_injected_parameters() -> None:
    info = read_target(f"{HERE}.fit", "process")
    assert info is not None
    assert info.names == ["force", "epochs", "lr", "tags"]  # not store (a permanence), not controller
    assert info.doc == "Fit something."
    assert not info.accepts_any
    lr = info.get("lr")
    assert lr is not None and (lr.default, lr.type_text, lr.required) == (0.01, "float", False)


def test_a_class_signature_with_kwargs_and_defaults_a_config_cannot_hold() -> None:
    info = read_target(f"{HERE}.Store", "permanence")
    assert info is not None and info.accepts_any and info.names == ["size", "shape", "root", "names"]
    filled = {p.name: config_default(p) for p in info.params}
    # a tuple would come back a list and "${...}" an interpolation: left to the target's own default
    assert filled == {"size": (True, 4), "shape": (False, None), "root": (False, None), "names": (True, None)}
    needs = read_target(f"{HERE}.Needs", "permanence")
    assert needs is not None and config_default(needs.params[0]) == (True, "???")


@pytest.mark.parametrize(("path", "kind"), [("no.such.Thing", "process"), (f"{HERE}.Store", "process"),
                                            (f"{HERE}.nothing", "permanence")])
def test_a_target_that_cannot_be_read_is_none(path: str, kind: str) -> None:
    assert read_target(path, kind) is None  # the builder reports it, with its key


@pytest.fixture
def tipi_compose() -> Iterator[Any]:
    """``compose(*overrides)``: tipi's config tree composed by Hydra with the seam's params hook installed."""
    with installed("params"), initialize_config_module("tipi.conf", version_base="1.3"):
        yield lambda *overrides: compose(config_name="config", overrides=list(overrides))


def test_composition_fills_defaults_and_takes_overrides_without_plus(tipi_compose: Any) -> None:
    cfg = tipi_compose("processes.result.num_samples=7", "+processes.train.epochs=5", "data.eval_batch_size=8",
                       "permanences.network.checkpoint_dir=ckpt")
    assert cfg.processes.result.num_samples == 7
    assert cfg.processes.train.epochs == 5  # "+" on a parameter still sets it
    assert cfg.processes.test.use_best is True and cfg.processes.train.force is False  # not in any YAML
    assert cfg.data.eval_batch_size == 8  # permanences.data: ${data} is filled at data
    assert cfg.permanences.network.checkpoint_dir == "ckpt"
    assert OmegaConf.is_interpolation(cfg.permanences, "data")


def test_a_reference_is_followed_and_the_config_stays_struct(tipi_compose: Any) -> None:
    cfg = tipi_compose("permanences.data.batch_size=4")
    assert cfg.data.batch_size == 4 and OmegaConf.is_interpolation(cfg.permanences, "data")
    assert OmegaConf.is_struct(cfg.processes.train)  # opened only while the overrides applied
    with pytest.raises(Exception, match="not in struct"):
        cfg.processes.train.nope = 1


def test_a_misspelt_parameter_is_a_config_error_hydra_prints_compactly(tipi_compose: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        tipi_compose("processes.train.epocs=1")
    error = caught.value
    assert isinstance(error, HydraException)
    assert error.key == "processes.train.epocs" and error.hint == "Did you mean 'epochs'?"
    assert "Valid: checkpoint_every_n_steps, early_stopping_patience, epochs," in error.message
    with pytest.raises(ConfigError, match="unknown permanence 'netwrk'"):
        tipi_compose("permanences.netwrk.amp=true")


def test_a_target_set_on_the_command_line_brings_its_own_parameters(tipi_compose: Any) -> None:
    listed = tipi_compose().processes.train.epochs
    cfg = tipi_compose(f"processes.train._target_={HERE}.fit", "processes.train.lr=0.5")
    train = OmegaConf.to_container(cfg.processes.train)
    assert isinstance(train, dict)
    assert (train["lr"], train["tags"], train["epochs"]) == (0.5, None, listed)  # epochs: the YAML's value
    added = tipi_compose(f"+permanences.store._target_={HERE}.Store", "+permanences.store.size=9")
    assert OmegaConf.to_container(added.permanences.store) == {"_target_": f"{HERE}.Store", "size": 9, "names": None}
    # **extra: any key goes to the target, which judges it
    swapped = tipi_compose(f"permanences.hparams._target_={HERE}.Store", "permanences.hparams.colour=red")
    assert (swapped.permanences.hparams.colour, swapped.permanences.hparams.size) == ("red", 4)


def test_an_unreadable_target_leaves_its_overrides_to_the_builder(tipi_compose: Any) -> None:
    cfg = tipi_compose("processes.train._target_=no.such.Fit", "processes.train.lr=0.5")
    assert cfg.processes.train.lr == 0.5 and "force" not in cfg.processes.train


def test_help_section_shows_docs_kwargs_and_config_values(tipi_compose: Any) -> None:
    cfg = tipi_compose(f"+permanences.store._target_={HERE}.Store", "processes.train.epochs=40")
    assert isinstance(cfg, DictConfig)
    text = params_help(cfg)
    assert "permanences.store: tests.unit.test_params.Store\n  A store of things." in text
    assert "    ... and any other key (**kwargs)" in text
    assert re.search(r"^    epochs: int +\= \d+   config: 40$", text, re.MULTILINE), text



# -- reading from the source: only ever a faster way to the answer importing gives ----------
def _kind(target: str) -> str:
    return "process" if ".processes." in target else "permanence"


@pytest.mark.parametrize("target", [*BUILT_IN, f"{HERE}.Store", f"{HERE}.Needs"])
def test_the_source_gives_what_importing_gives(target: str) -> None:
    from_source = read_from_source(target, _kind(target))
    assert from_source is not None, f"{target} is plain enough to be read from its source"
    assert from_source == read_imported(target, _kind(target))


PLAIN = '''\
"""A module."""
from .base import Base, Helper


class Child(Base):
    """Inherits its __init__."""


def make(size: int = 3, *, name: str = "x", **rest) -> None:
    """A factory."""


class Wide:
    """Wide."""

    def helper(self) -> None:
        pass

    def __init__(
        self,
        size: int = 2,
    ) -> None:
        self.size = size

    def other(self) -> None:
        pass
'''
BASE = '''\
class Base:
    def __init__(self, controller, force: bool = False, depth: int = -1) -> None:
        pass


class Helper:
    def __init__(self, a: int = 1) -> None:
        pass
'''
NOT_PLAIN = '''\
import dataclasses
import os
DEFAULT = 3


@dataclasses.dataclass
class Decorated:
    size: int = 1


class Made:
    def __new__(cls, size: int = 1):
        return object.__new__(cls)

    def __init__(self, size: int = 1) -> None:
        pass


class FromConstant:
    def __init__(self, size: int = DEFAULT) -> None:
        pass


class Rebound:
    def __init__(self, size: int = 1) -> None:
        pass


Rebound = dataclasses.dataclass(Rebound)


class Inherits(os.PathLike):
    pass


class LaterInit:
    def __init__(self, size: int = 1) -> None:
        pass

    __init__ = dataclasses.replace
'''


def test_the_source_reader_follows_plain_shapes_and_refuses_the_rest(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "srcpkg"
    package.mkdir()
    for name, text in {"__init__.py": "from srcpkg.mod import Child\n", "mod.py": PLAIN, "base.py": BASE,
                       "odd.py": NOT_PLAIN}.items():
        (package / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    child = read_from_source("srcpkg.Child", "process")  # re-exported, then inherited from base.Base
    assert child is not None and child.doc == "Inherits its __init__."
    assert [(p.name, p.default) for p in child.params] == [("force", False), ("depth", -1)]
    assert read_from_source("srcpkg.mod.Helper", "permanence") is not None  # imported into mod, defined in base
    make = read_from_source("srcpkg.mod.make", "permanence")
    assert make is not None and make.accepts_any and make.names == ["size", "name"]
    assert read_from_source("srcpkg.mod.make", "process") is None  # a process function is decorated: import it
    wide = read_from_source("srcpkg.mod.Wide", "permanence")
    assert wide is not None and wide.names == ["size"] and wide.doc == "Wide."
    for name in ("Decorated", "Made", "FromConstant", "Rebound", "Inherits", "LaterInit", "Missing"):
        assert read_from_source(f"srcpkg.odd.{name}", "permanence") is None, name
    assert "srcpkg" not in sys.modules  # nothing was imported
