"""Every built-in permanence and process keeps the lifecycle contract (tipi.testing), as a user's own can check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_module

from tests.doubles import RecordingPermanence
from tipi import Permanence, PipelineBuilder
from tipi._hydra import installed
from tipi.core.config import register_resolvers
from tipi.testing import ContractBroken, check_permanence, check_process

FAST = ("debug=fast", "model=unet_small", "progress=none", "processes.train.epochs=1",
        "processes.train.figures_every_n_epochs=0", "data.limit_train=16", "run.name=conformance")
# distributed is listed but None in a one-process run (nothing to hold); the DDP tests run it for real
BUILT_IN_PERMANENCES = ("device", "hparams", "progress", "logger", "data", "network")
BUILT_IN_PROCESSES = ("load", "train", "validate", "test", "result")


@pytest.fixture(scope="module")
def cfg() -> Iterator[Any]:
    register_resolvers()
    with installed("params"), initialize_config_module("tipi.conf", version_base="1.3"):
        yield compose(config_name="config", overrides=list(FAST))


def builder_of(cfg: Any) -> Callable[[], dict[str, Permanence | None]]:
    return lambda: PipelineBuilder(cfg).build()[0]


def test_the_default_pipeline_lists_every_built_in(cfg: Any) -> None:
    permanences, specs = PipelineBuilder(cfg).build()
    assert tuple(name for name, p in permanences.items() if p is not None) == BUILT_IN_PERMANENCES
    assert permanences["distributed"] is None
    assert tuple(spec.name for spec in specs) == BUILT_IN_PROCESSES


@pytest.mark.parametrize("name", BUILT_IN_PERMANENCES)
def test_built_in_permanence_keeps_the_contract(cfg: Any, name: str, tmp_path: Path) -> None:
    check_permanence(builder_of(cfg), name, tmp_path)


def test_every_built_in_process_keeps_the_contract(cfg: Any, tmp_path: Path) -> None:
    build = builder_of(cfg)
    specs = {spec.name: spec for spec in PipelineBuilder(cfg).build()[1]}
    for name in BUILT_IN_PROCESSES:  # in pipeline order, in one run directory: each reads the earlier steps' outputs
        check_process(build, specs[name], tmp_path)


def test_the_kit_names_a_broken_contract(tmp_path: Path) -> None:
    class StateNotJson(RecordingPermanence):
        def get_state(self) -> dict[str, Any]:
            return {"handle": object()}

    with pytest.raises(ContractBroken, match=r"s.get_state\(\) is not JSON"):
        check_permanence(lambda: {"s": StateNotJson("s")}, "s", tmp_path)
    with pytest.raises(ContractBroken, match="returned no permanence named 'missing'"):
        check_permanence(lambda: {"s": RecordingPermanence("s")}, "missing", tmp_path)
    check_permanence(lambda: {"s": RecordingPermanence("s")}, "s", tmp_path)  # the double keeps it
