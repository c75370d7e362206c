"""``@pipeline_process``: a function that runs in a script and as a configured process."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from tipi.core.builder import PipelineBuilder
from tipi.core.context import RunContext
from tipi.core.controller import PipelineController
from tipi.core.errors import ConfigError
from tipi.core.executor import PipelineExecutor
from tipi.core.permanence import Permanence
from tipi.core.process import PipelineProcess, ProcessSpec
from tipi.decorators import pipeline_process
from tipi.helpers import logger, progress_bar
from tipi.permanences.metrics_logger import MetricsLogger
from tipi.permanences.progress import ProgressManager

HERE = __name__


@pipeline_process
def train(epochs: int = 10, lr: float = 1e-3) -> float:
    """Pretend to train: the loss halves each epoch."""
    loss = 1.0
    for epoch in progress_bar(range(epochs), desc="epoch"):
        loss *= 0.5
        logger.log({"loss": loss, "lr": lr}, step=epoch)
    return loss


class Store(Permanence):
    """A permanence a function asks for."""

    def __init__(self, value: int = 7) -> None:
        self.value = value

    def cleanup(self) -> None:
        """Nothing to release."""


@pipeline_process
def uses_permanences(store: Store, progress, controller, scale: int = 1,
                     maybe: MetricsLogger | None = None) -> dict[str, Any]:
    """Injected: ``store`` (by type), ``progress`` (by name), ``controller``, optional ``maybe``."""
    return {"value": store.value * scale, "progress": progress, "controller": controller, "maybe": maybe}


@pipeline_process(name="Positional")
def positional(a: int, /, b: int = 2) -> int:
    """A positional-only option still comes from the config."""
    return a * 10 + b


def build(tmp_path: Path, processes: dict[str, Any], permanences: dict[str, Any] | None = None,
          ) -> PipelineController:
    cfg = OmegaConf.create({
        "permanences": permanences if permanences is not None else {
            "progress": {"_target_": "tipi.permanences.progress.ProgressManager", "mode": "none"},
            "logger": {"_target_": "tipi.permanences.metrics_logger.MetricsLogger"},
        },
        "processes": processes,
    })
    perms, specs = PipelineBuilder(cfg).build()
    return PipelineController(perms, specs, RunContext(run_dir=tmp_path))


def test_still_a_function() -> None:
    assert train(epochs=5) == 0.5**5  # no pipeline: standalone helpers, metrics dropped quietly-once
    assert train.__name__ == "train" and train.__doc__ == "Pretend to train: the loss halves each epoch."
    assert list(inspect.signature(train).parameters) == ["epochs", "lr"]
    assert positional(3, b=4) == 34
    with pytest.raises(TypeError):
        positional(a=3)  # exactly like the function: a is positional-only


def test_process_class_describes_the_function() -> None:
    cls = train.process_class
    assert issubclass(cls, PipelineProcess)
    assert cls.__tipi_function__ is train.__wrapped__
    assert str(cls.__tipi_signature__) == "(controller, force: bool = False, *, epochs: int = 10, lr: float = 0.001)"
    assert cls.requires == {}
    perms = uses_permanences.process_class
    assert list(perms.__tipi_signature__.parameters) == ["controller", "force", "scale"]
    assert perms.requires == {"store": Store, "progress": Permanence}  # "maybe" is optional


def test_runs_as_a_configured_process(tmp_path: Path) -> None:
    controller = build(tmp_path, {"train": {"_target_": f"{HERE}.train", "epochs": 3, "lr": 0.1}})
    assert PipelineExecutor(controller).run() == {"train": 0.125}
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"], r["lr"]) for r in rows] == [(0, 0.5, 0.1), (1, 0.25, 0.1), (2, 0.125, 0.1)]
    process = next(controller.iterate_processes())
    assert process.skip() is False


def test_typo_is_caught_before_the_run_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        build(tmp_path, {"train": {"_target_": f"{HERE}.train", "epocs": 3}})
    assert err.value.key == "processes.train.epocs"
    assert "Did you mean 'epochs'?" in str(err.value)


def test_config_values_are_type_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        build(tmp_path, {"train": {"_target_": f"{HERE}.train", "epochs": "ten"}})
    assert err.value.key == "processes.train.epochs"
    assert "expected int" in str(err.value)


def test_permanences_are_injected_not_configured(tmp_path: Path) -> None:
    permanences = {
        "progress": {"_target_": "tipi.permanences.progress.ProgressManager", "mode": "none"},
        "store": {"_target_": f"{HERE}.Store", "value": 5},
    }
    controller = build(tmp_path, {"perm": {"_target_": f"{HERE}.uses_permanences", "scale": 2}}, permanences)
    result = PipelineExecutor(controller).run()["perm"]
    assert result["value"] == 10
    assert isinstance(result["progress"], ProgressManager)
    assert result["controller"] is controller
    assert result["maybe"] is None  # not configured: the default

    with pytest.raises(ConfigError) as err:  # an injected name is not a config option
        build(tmp_path, {"perm": {"_target_": f"{HERE}.uses_permanences", "store": 3}}, permanences)
    assert err.value.key == "processes.perm.store"


def test_missing_permanence_is_reported_before_the_run(tmp_path: Path) -> None:
    permanences = {"progress": {"_target_": "tipi.permanences.progress.ProgressManager", "mode": "none"}}
    with pytest.raises(ConfigError) as err:
        build(tmp_path, {"perm": {"_target_": f"{HERE}.uses_permanences"}}, permanences)
    assert "needs permanence 'store'" in str(err.value)


def test_optional_permanence_is_injected_when_configured(tmp_path: Path) -> None:
    permanences = {
        "progress": {"_target_": "tipi.permanences.progress.ProgressManager", "mode": "none"},
        "store": {"_target_": f"{HERE}.Store"},
        "maybe": {"_target_": "tipi.permanences.metrics_logger.MetricsLogger"},
    }
    controller = build(tmp_path, {"perm": {"_target_": f"{HERE}.uses_permanences"}}, permanences)
    result = PipelineExecutor(controller).run()["perm"]
    assert isinstance(result["maybe"], MetricsLogger) and result["value"] == 7


def test_direct_call_inside_a_pipeline_fills_permanences(tmp_path: Path) -> None:
    class Caller(PipelineProcess):
        def execute(self) -> int:
            return uses_permanences(scale=3)["value"]  # store, progress, controller come from the pipeline

    permanences = {
        "progress": {"_target_": "tipi.permanences.progress.ProgressManager", "mode": "none"},
        "store": {"_target_": f"{HERE}.Store", "value": 2},
    }
    controller = build(tmp_path, {}, permanences)
    controller.process_specs = [ProcessSpec(Caller, {}, name="c")]
    assert PipelineExecutor(controller).run() == {"c": 6}


def test_positional_only_option_from_config(tmp_path: Path) -> None:
    controller = build(tmp_path, {"p": {"_target_": f"{HERE}.positional", "a": 4}})
    assert PipelineExecutor(controller).run() == {"p": 42}
    assert positional.process_class.__name__ == "Positional"


def test_reserved_and_invalid_uses() -> None:
    with pytest.raises(TypeError, match="'force' is reserved"):
        @pipeline_process
        def bad(force: bool = False) -> None:
            """Clashes with the process's own option."""

    with pytest.raises(TypeError):
        pipeline_process(42)  # type: ignore[call-overload]
