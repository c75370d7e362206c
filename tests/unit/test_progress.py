"""The progress permanence: one live display, nested bars, plain lines, a free ``none`` mode.

Every time a bar shows (elapsed, remaining, the plain lines' rate limit) comes
from a fake clock handed to the manager as ``get_time``, as Rich's own
``Progress`` takes one: no assertion here depends on how fast the machine is.
"""

from __future__ import annotations

import io
import logging
import re
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest
from rich.console import Console

from tipi.core.context import RunContext
from tipi.core.controller import PipelineController
from tipi.core.errors import ConfigError
from tipi.core.executor import PipelineExecutor
from tipi.core.process import PipelineProcess, ProcessSpec
from tipi.permanences.progress import (
    NULL_TASK,
    ProgressManager,
    get_progress_manager,
    progress_task,
    use_progress,
)
from tipi.processes.common import bar

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


class FakeClock:
    """A monotonic clock that moves only when told to (steps of 1/8 s stay exact in binary floats)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


def rich_manager(buf: io.StringIO, **kwargs: Any) -> ProgressManager:
    console = Console(file=buf, force_terminal=True, width=120, color_system="truecolor")
    return ProgressManager(mode="rich", console=console, refresh_per_second=kwargs.pop("refresh_per_second", 50),
                           **kwargs)


def last_frame(raw: str) -> str:
    """The text of the display's final frame (after the last cursor-up, or carriage return for one row)."""
    tail = re.split(r"\x1b\[\d*A|\r", raw)[-1]
    return ANSI.sub("", tail)


def rows(manager: ProgressManager) -> list[Any]:
    """The Rich tasks (rows) of a running rich display."""
    display = manager.display
    assert display is not None
    return display.tasks


class ThreeLevels(PipelineProcess):
    """epoch > train-val > batch, the shape of a training process; records its handles."""

    seen: ClassVar[list[Any]] = []

    def __init__(self, controller: PipelineController, force: bool = False, epochs: int = 3) -> None:
        super().__init__(controller, force)
        self.epochs = epochs

    def execute(self) -> str:
        progress = self.controller.get_permanence("progress", ProgressManager)
        with progress.task("epoch", total=self.epochs) as epoch:
            ThreeLevels.seen.append(epoch)
            for _ in range(self.epochs):
                for phase in ("train-val", "val"):
                    with progress.task(phase, total=4) as batches:
                        ThreeLevels.seen.append(batches)
                        for _ in range(4):
                            with progress.task("batch", total=5) as inner:
                                ThreeLevels.seen.append(inner)
                                inner.advance(5)
                            batches.advance()
                epoch.advance()
                epoch.update(status=f"epoch {epoch.completed:g}")
        return "done"


@pytest.mark.parametrize(("kwargs", "key", "says"), [
    ({"mode": "fancy"}, "permanences.progress.mode", "auto, rich, plain, none"),
    ({"refresh_per_second": 0}, "permanences.progress.refresh_per_second", "must be > 0"),
    ({"plain_interval_s": -1}, "permanences.progress.plain_interval_s", "must be >= 0"),
])
def test_rejects_bad_settings_at_construction_naming_the_key(kwargs: dict[str, Any], key: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        ProgressManager(**kwargs)
    assert err.value.key == key
    assert says in str(err.value)


def test_construction_starts_nothing() -> None:
    manager = ProgressManager(mode="rich")
    assert manager.display is None and not manager.running
    manager.cleanup()  # before initialize: nothing to do, no error


def test_three_levels_inside_the_executor(tmp_path: Path) -> None:
    ThreeLevels.seen = []
    buf = io.StringIO()
    manager = rich_manager(buf, get_time=FakeClock())
    controller = PipelineController({"progress": manager}, [ProcessSpec(ThreeLevels, {}, name="train")],
                                    RunContext(run_dir=tmp_path))
    results = PipelineExecutor(controller).run()  # no "Only one live display", no error from the late cleanup bar

    assert results == {"train": "done"}
    assert not manager.running and manager.display is None
    assert ThreeLevels.seen and all(h.completed == h.total for h in ThreeLevels.seen)
    depths = {h.name: h.depth for h in ThreeLevels.seen}
    assert depths == {"epoch": 1, "train-val": 2, "val": 2, "batch": 3}  # under the executor's "overall"
    final = last_frame(buf.getvalue())
    # Finished inner bars are gone; the executor's two bars remain, complete.
    assert re.search(r"overall\s.*\s1/1\s", final)
    assert re.search(r"cleanup\s.*\s1/1\s", final)
    assert "batch" not in final and "epoch" not in final


def test_inner_bars_reuse_their_row() -> None:
    manager = rich_manager(io.StringIO(), get_time=FakeClock())
    manager.initialize()
    try:
        with manager.task("epoch", total=50) as epoch:
            for _ in range(50):
                with manager.task("train-val", total=10) as inner:
                    inner.advance(10)
                epoch.advance()
            # epoch + one train-val row, however many epochs ran
            assert [t.description.strip() for t in rows(manager)] == ["epoch", "train-val"]
            assert [h.path for h in manager.open_tasks] == ["epoch"]
    finally:
        manager.cleanup()


def test_counts_reach_rich_on_refresh_only() -> None:
    manager = rich_manager(io.StringIO(), refresh_per_second=0.01, get_time=FakeClock())  # no redraw of its own
    manager.initialize()
    try:
        with manager.task("loop", total=1000) as bar:
            for _ in range(500):
                bar.advance()
            [rich_task] = rows(manager)
            assert rich_task.completed == 0  # advance() did not touch Rich
            manager.display.refresh()  # type: ignore[union-attr]
            assert rich_task.completed == 500
            bar.update(total=2000, status="half", postfix={"loss": 0.12345, "val/mean_iou": 0.5})
            bar.update(postfix={"loss": 0.25})  # merged: the validation metric stays
            manager.display.refresh()  # type: ignore[union-attr]
            assert rich_task.total == 2000 and rich_task.fields["status"] == "half"
            assert rich_task.fields["postfix"] == "loss 0.25  val/mean_iou 0.5"
    finally:
        manager.cleanup()


def test_rich_bars_read_the_injected_clock_and_show_the_postfix() -> None:
    clock, buf = FakeClock(), io.StringIO()
    manager = rich_manager(buf, get_time=clock)
    manager.initialize()
    with manager.task("epoch", total=4) as bar:
        for _ in range(4):
            clock.tick(18.75)  # 75 s in all, whatever the machine's speed
            bar.advance()
        bar.update(postfix={"loss": 0.12345, "val/mean_iou": 0.4561})
    manager.cleanup()
    final = last_frame(buf.getvalue())
    assert re.search(r"^epoch\s.*\s4/4\s+0:01:15\s.*\sloss 0\.123  val/mean_iou 0\.456\s*$", final, re.MULTILINE), final


def test_cleanup_is_idempotent_and_late_bars_are_harmless() -> None:
    manager = rich_manager(io.StringIO(), get_time=FakeClock())
    manager.initialize()
    with manager.task("cleanup", total=1) as bar:
        manager.cleanup()
        manager.cleanup()
        assert manager.running  # stays up until the open bar closes
        with manager.task("late", total=3) as late:  # opened after cleanup(): shows nothing
            late.advance(3)
        bar.advance()
    assert not manager.running
    manager.cleanup()
    with manager.task("after", total=2) as after:
        after.advance(2)
    assert after.completed == 2


def test_unknown_total_reads_full_when_done() -> None:
    manager = rich_manager(io.StringIO(), get_time=FakeClock())
    manager.initialize()
    with manager.task("stream") as bar:
        for _ in range(7):
            bar.advance()
    [rich_task] = rows(manager)
    assert rich_task.total == 7 and rich_task.finished
    manager.cleanup()


def test_plain_mode_prints_one_line_per_bar_path_per_interval_with_the_postfix() -> None:
    clock, stream = FakeClock(), io.StringIO()
    manager = ProgressManager(mode="plain", plain_interval_s=10, stream=stream, get_time=clock)
    manager.initialize()
    with manager.task("overall", total=2) as overall:
        with manager.task("epoch", total=100) as epoch:
            for _ in range(100):  # 50 s: a line every 10 s
                clock.tick(0.5)
                epoch.advance()
        for _ in range(200):  # an inner loop reopened 200 times in 25 s prints like one bar: a "done" every 10 s
            clock.tick(0.125)
            with manager.task("batch", total=3) as inner:
                inner.advance(3)
        overall.update(postfix={"loss": 0.5, "val/mean_iou": 0.4567})
        overall.advance(2)
    manager.cleanup()
    assert stream.getvalue().splitlines() == [
        "  overall/epoch 20/100 20% elapsed 0:00:10 eta 0:00:40",
        "  overall/epoch 40/100 40% elapsed 0:00:20 eta 0:00:30",
        "  overall/epoch 60/100 60% elapsed 0:00:30 eta 0:00:20",
        "  overall/epoch 80/100 80% elapsed 0:00:40 eta 0:00:10",
        "  overall/epoch 100/100 100% elapsed 0:00:50 eta 0:00:00",
        "  overall/epoch 100/100 100% elapsed 0:00:50 done",
        "  overall/batch 3/3 100% elapsed 0:00:00 done",  # at 50.125 s, 60.125 s and 70.125 s
        "  overall/batch 3/3 100% elapsed 0:00:00 done",
        "  overall/batch 3/3 100% elapsed 0:00:00 done",
        "overall 2/2 100% elapsed 0:01:15 loss 0.5  val/mean_iou 0.457",
        "overall 2/2 100% elapsed 0:01:15 done loss 0.5  val/mean_iou 0.457",
    ]


def test_auto_mode_is_plain_without_a_terminal() -> None:
    manager = ProgressManager(mode="auto", console=Console(file=io.StringIO(), force_terminal=False))
    manager.initialize()
    assert manager.active_mode == "plain"
    manager.cleanup()
    manager = ProgressManager(mode="auto", console=Console(file=io.StringIO(), force_terminal=True))
    manager.initialize()
    assert manager.active_mode == "rich"
    manager.cleanup()


def test_one_shared_do_nothing_handle_for_none_mode_and_for_a_pipeline_without_progress(tmp_path: Path) -> None:
    manager = ProgressManager(mode="none")
    manager.initialize()
    with manager.task("a", total=3) as a, manager.task("b") as b:
        a.advance()
        b.update(total=3, completed=1, status="x", postfix={"loss": 1.0})
    assert a is NULL_TASK and b is NULL_TASK
    assert manager.display is None and b.completed == 0 and not b.postfix
    manager.cleanup()
    # The built-in processes' bars, in a pipeline that has no progress permanence: the same handle.
    with bar(PipelineController({}, [], RunContext(run_dir=tmp_path)), "epoch", total=3) as handle:
        handle.update(postfix={"loss": 1.0})
        assert handle is NULL_TASK


def test_progress_task_decorator_method_and_module(tmp_path: Path) -> None:
    manager = rich_manager(io.StringIO(), get_time=FakeClock())

    @manager.progress_task("train")
    def train_epoch(task: Any, total: int, scale: int = 1) -> float:
        for _ in range(total):
            task.advance(scale)
        return task.completed

    @progress_task("result", total=4)
    def result(task: Any, total: int) -> tuple[str, float | None]:
        for _ in range(total):
            task.advance()
        return task.name, task.total

    manager.initialize()
    assert train_epoch(5, scale=2) == 10
    assert train_epoch(total=3) == 3
    manager.cleanup()

    class Uses(PipelineProcess):
        def execute(self) -> Any:
            assert get_progress_manager() is manager2
            return result()

    manager2 = rich_manager(io.StringIO(), get_time=FakeClock())
    controller = PipelineController({"progress": manager2}, [ProcessSpec(Uses, {}, name="r")],
                                    RunContext(run_dir=tmp_path))
    assert PipelineExecutor(controller).run() == {"r": ("result", 4.0)}


def test_standalone_display_is_shared_by_nested_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)  # not a terminal: the standalone manager goes plain
    assert get_progress_manager() is None
    with use_progress() as outer:
        with use_progress() as inner:
            assert inner is outer
        with outer.task("loop", total=2) as loop:
            loop.advance(2)
    assert get_progress_manager() is None
    assert not outer.running
    assert stream.getvalue().startswith("loop 2/2 100%")


def test_log_handlers_write_above_the_display() -> None:
    """A handler holding the real stderr (Hydra's console handler does) goes through the display meanwhile."""
    original = sys.stderr
    handler = logging.StreamHandler(original)
    log = logging.getLogger("tipi.test.reroute")
    log.addHandler(handler)
    log.propagate = False
    buf = io.StringIO()
    manager = rich_manager(buf, get_time=FakeClock())
    try:
        manager.initialize()
        assert handler.stream is not original and handler.stream is sys.stderr  # Rich's proxy
        with manager.task("loop", total=1) as loop:
            log.warning("hello from a process")
            loop.advance()
        manager.cleanup()
        assert handler.stream is original
        assert "hello from a process" in ANSI.sub("", buf.getvalue())
    finally:
        log.removeHandler(handler)
        log.propagate = True
