"""The helpers: the same calls work in a plain script and inside a pipeline."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from tipi.core.context import RunContext
from tipi.core.controller import PipelineController
from tipi.core.executor import PipelineExecutor
from tipi.core.process import PipelineProcess, ProcessSpec
from tipi.helpers import DeviceManager, Logger, device_manager, logger, progress_bar
from tipi.permanences.metrics_logger import MetricsLogger
from tipi.permanences.progress import ProgressManager, get_progress_manager


@pytest.fixture
def wandb_disabled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- standalone ---------------------------------------------------------------------
def test_progress_bar_standalone_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)  # not a terminal
    managers = set()
    items = []
    for i in progress_bar(range(3), desc="outer"):
        for j in progress_bar(iter(range(2)), desc="inner"):  # no len(): counts without a total
            managers.add(id(get_progress_manager()))
            items.append((i, j))
    assert items == [(i, j) for i in range(3) for j in range(2)]
    assert len(managers) == 1  # nested loops share one display
    assert get_progress_manager() is None  # and it is gone afterwards
    text = stream.getvalue()
    assert "\x1b" not in text
    assert text.splitlines()[-1].startswith("outer 3/3 100%")
    assert "outer/inner 2 " in text


def test_progress_bar_standalone_rich_one_display(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # Rich treats stderr as a terminal
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    seen = []
    for _ in progress_bar([1, 2], desc="a"):
        for _ in progress_bar([1, 2, 3], desc="b"):
            manager = get_progress_manager()
            assert manager is not None
            seen.append((manager, manager.active_mode, manager.display))
    assert {(id(m), mode, id(p)) for m, mode, p in seen} == {(id(seen[0][0]), "rich", id(seen[0][2]))}
    assert not seen[0][0].running


def test_progress_bar_break_closes_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    for i in progress_bar(range(100), desc="early"):
        if i == 3:
            break
    assert get_progress_manager() is None


def test_logger_standalone_wandb_disabled(wandb_disabled: Path) -> None:
    standalone = Logger()
    run = standalone.init(project="tipi-test", config={"lr": 0.1})
    assert run is standalone.run and run is not None
    sent: list[tuple[dict[str, Any], int | None]] = []
    original = run.log
    run.log = lambda metrics, step=None: (sent.append((metrics, step)), original(metrics, step=step))
    standalone.log({"loss": 0.5}, step=0)
    standalone.log({"loss": 0.25})
    assert sent == [({"loss": 0.5}, 0), ({"loss": 0.25}, None)]
    standalone.finish()
    assert standalone.run is None
    standalone.finish()  # idempotent
    assert not (wandb_disabled / "metrics.jsonl").exists()  # standalone: WandB only


def test_logger_log_before_init_drops_with_one_message(caplog: pytest.LogCaptureFixture) -> None:
    standalone = Logger()
    with caplog.at_level(logging.WARNING, logger="tipi.helpers"):
        standalone.log({"loss": 1.0})
        standalone.log({"loss": 2.0})
    assert [r.message for r in caplog.records] == ["logger.log() before logger.init(): metrics are dropped"]


def test_device_manager_standalone() -> None:
    import torch

    manager = DeviceManager()
    device = manager.get_device()
    assert isinstance(device, torch.device)
    assert manager.get_device() is device  # cached: cheap in a loop
    assert manager.get_device("cpu") == torch.device("cpu")


def test_module_objects_exist() -> None:
    assert isinstance(logger, Logger) and isinstance(device_manager, DeviceManager)


# -- inside a pipeline ----------------------------------------------------------------
class HelperProcess(PipelineProcess):
    """Uses the helpers as a script would."""

    def execute(self) -> dict[str, Any]:
        assert logger.init(project="ignored") is self.controller.permanences["logger"]
        device = device_manager.get_device()
        depths = []
        for epoch in progress_bar(range(3), desc="epoch"):
            for _batch in progress_bar(range(4), desc="batch"):
                manager = get_progress_manager()
                depths.append(manager.open_tasks[-1].depth if manager is not None else None)
            logger.log({"loss": 1.0 / (epoch + 1)}, step=epoch)
        logger.finish()  # the pipeline owns the run: nothing happens
        return {"device": str(device), "depths": sorted(set(depths)),
                "manager": get_progress_manager()}


def test_helpers_inside_a_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    def no_wandb(*_: Any, **__: Any) -> None:
        raise AssertionError("a pipeline's helpers must not start a WandB run")

    monkeypatch.setattr(wandb, "init", no_wandb)
    from tipi.permanences.device import Device

    progress = ProgressManager(mode="rich", console=Console(file=io.StringIO(), force_terminal=True),
                               refresh_per_second=50)
    controller = PipelineController(
        {"progress": progress, "device": Device("cpu"), "logger": MetricsLogger()},
        [ProcessSpec(HelperProcess, {}, name="helpers")],
        RunContext(run_dir=tmp_path),
    )
    result = PipelineExecutor(controller).run()["helpers"]
    assert result["device"] == "cpu"
    assert result["depths"] == [2]  # batch under epoch under the executor's "overall"
    assert result["manager"] is progress
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in rows] == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]


def test_helpers_in_a_pipeline_without_logger_or_progress(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())

    class Bare(PipelineProcess):
        def execute(self) -> int:
            total = sum(progress_bar(range(5), desc="sum"))  # no progress permanence: standalone display
            logger.log({"x": 1})
            return total

    controller = PipelineController({}, [ProcessSpec(Bare, {}, name="bare")], RunContext(run_dir=tmp_path))
    with caplog.at_level(logging.WARNING, logger="tipi.helpers"):
        assert PipelineExecutor(controller).run() == {"bare": 10}
    assert any("no 'logger' permanence" in r.message for r in caplog.records)
    assert not (tmp_path / "metrics.jsonl").exists()
