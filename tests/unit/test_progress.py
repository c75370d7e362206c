"""The progress permanence: one live display, nested bars, plain lines, a free ``none`` mode."""

from __future__ import annotations

import io
import logging
import re
import statistics
import sys
import time
from typing import Any, ClassVar

import pytest
from rich.console import Console

from tipi.core.context import RunContext
from tipi.core.controller import PipelineController
from tipi.core.errors import ConfigError
from tipi.core.executor import PipelineExecutor
from tipi.core.process import PipelineProcess, ProcessWithParams
from tipi.permanences.progress import (
    NULL_TASK,
    ProgressManager,
    get_progress_manager,
    progress_task,
    use_progress,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def rich_manager(buf: io.StringIO, **kwargs: Any) -> ProgressManager:
    console = Console(file=buf, force_terminal=True, width=120, color_system="truecolor")
    return ProgressManager(mode="rich", console=console, refresh_per_second=kwargs.pop("refresh_per_second", 50),
                           **kwargs)


def last_frame(raw: str) -> str:
    """The text of the display's final frame (everything after the last cursor-up sequence)."""
    tail = re.split(r"\x1b\[\d*A", raw)[-1]
    return ANSI.sub("", tail)


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


def test_rejects_unknown_mode_at_construction() -> None:
    with pytest.raises(ConfigError) as err:
        ProgressManager(mode="fancy")
    assert err.value.key == "permanences.progress.mode"
    for mode in ("auto", "rich", "plain", "none"):
        assert mode in str(err.value)


def test_construction_starts_nothing() -> None:
    manager = ProgressManager(mode="rich")
    assert manager._progress is None and not manager.running
    manager.cleanup()  # before initialize: nothing to do, no error


def test_three_levels_inside_the_executor(tmp_path: Any) -> None:
    ThreeLevels.seen = []
    buf = io.StringIO()
    manager = rich_manager(buf)
    controller = PipelineController({"progress": manager}, [ProcessWithParams(ThreeLevels, {}, name="train")],
                                    RunContext(run_dir=tmp_path))
    results = PipelineExecutor(controller).run()  # no "Only one live display", no error from the late cleanup bar

    assert results == {"train": "done"}
    assert not manager.running and manager._progress is None
    assert ThreeLevels.seen and all(h.completed == h.total for h in ThreeLevels.seen)
    depths = {h.name: h.depth for h in ThreeLevels.seen}
    assert depths == {"epoch": 1, "train-val": 2, "val": 2, "batch": 3}  # under the executor's "overall"
    final = last_frame(buf.getvalue())
    # Finished inner bars are gone; the executor's two bars remain, complete.
    assert re.search(r"overall\s.*\s1/1\s", final)
    assert re.search(r"cleanup\s.*\s1/1\s", final)
    assert "batch" not in final and "epoch" not in final


def test_inner_bars_reuse_their_row(tmp_path: Any) -> None:
    buf = io.StringIO()
    manager = rich_manager(buf)
    manager.initialize()
    try:
        with manager.task("epoch", total=50) as epoch:
            for _ in range(50):
                with manager.task("train-val", total=10) as inner:
                    inner.advance(10)
                epoch.advance()
            rows = manager._progress.tasks  # type: ignore[union-attr]
            # epoch + one train-val row, however many epochs ran
            assert [t.description.strip() for t in rows] == ["epoch", "train-val"]
    finally:
        manager.cleanup()


def test_counts_reach_rich_on_refresh_only() -> None:
    buf = io.StringIO()
    manager = rich_manager(buf, refresh_per_second=0.01)  # the refresh thread will not fire during the test
    manager.initialize()
    try:
        with manager.task("loop", total=1000) as bar:
            for _ in range(500):
                bar.advance()
            rich_task = manager._progress.tasks[0]  # type: ignore[union-attr]
            assert rich_task.completed == 0  # advance() did not touch Rich
            manager._progress.refresh()  # type: ignore[union-attr]
            assert rich_task.completed == 500
            bar.update(total=2000, status="half")
            manager._progress.refresh()  # type: ignore[union-attr]
            assert rich_task.total == 2000 and rich_task.fields["status"] == "half"
    finally:
        manager.cleanup()


def test_cleanup_is_idempotent_and_late_bars_are_harmless() -> None:
    manager = rich_manager(io.StringIO())
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
    manager = rich_manager(io.StringIO())
    manager.initialize()
    with manager.task("stream") as bar:
        for _ in range(7):
            bar.advance()
    assert manager._progress.tasks[0].total == 7  # type: ignore[union-attr]
    assert manager._progress.tasks[0].finished  # type: ignore[union-attr]
    manager.cleanup()


def test_plain_mode_no_ansi_and_bounded_lines() -> None:
    stream = io.StringIO()
    manager = ProgressManager(mode="plain", plain_interval_s=0.05, stream=stream)
    manager.initialize()
    start = time.monotonic()
    with manager.task("overall", total=2) as overall:
        with manager.task("epoch", total=100_000) as bar:
            for _ in range(100_000):
                bar.advance()
        for _ in range(200):  # an inner loop reopened 200 times prints like one bar
            with manager.task("batch", total=3) as inner:
                inner.advance(3)
        overall.advance(2)
    elapsed = time.monotonic() - start
    manager.cleanup()
    text = stream.getvalue()
    lines = text.splitlines()
    assert "\x1b" not in text
    # per bar path: at most one progress line and one "done" line per interval, plus its first "done"
    bound = 3 * (2 * (elapsed / 0.05 + 1) + 1)
    assert 3 <= len(lines) <= bound, (len(lines), bound)
    assert lines[-1].startswith("overall 2/2 100%") and lines[-1].split()[-1] == "done"
    assert any(line.strip().startswith("overall/epoch 100000/100000 100%") for line in lines)


def test_plain_mode_rate_limits_progress_lines() -> None:
    stream = io.StringIO()
    manager = ProgressManager(mode="plain", plain_interval_s=3600, stream=stream)
    manager.initialize()
    with manager.task("epoch", total=100_000) as bar:
        for _ in range(100_000):
            bar.advance()
    manager.cleanup()
    assert stream.getvalue().splitlines() == [stream.getvalue().splitlines()[0]]  # only the "done" line
    assert stream.getvalue().startswith("epoch 100000/100000 100% elapsed 0:00:0")


def test_auto_mode_is_plain_without_a_terminal() -> None:
    manager = ProgressManager(mode="auto", console=Console(file=io.StringIO(), force_terminal=False))
    manager.initialize()
    assert manager.active_mode == "plain"
    manager.cleanup()
    manager = ProgressManager(mode="auto", console=Console(file=io.StringIO(), force_terminal=True))
    manager.initialize()
    assert manager.active_mode == "rich"
    manager.cleanup()


def test_none_mode_is_one_shared_null_handle() -> None:
    manager = ProgressManager(mode="none")
    manager.initialize()
    with manager.task("a", total=3) as a, manager.task("b") as b:
        a.advance()
        b.update(total=3, completed=1, status="x")
    assert a is NULL_TASK and b is NULL_TASK
    assert manager._progress is None
    manager.cleanup()


def test_progress_task_decorator_method_and_module(tmp_path: Any) -> None:
    manager = rich_manager(io.StringIO())

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

    manager2 = rich_manager(io.StringIO())
    controller = PipelineController({"progress": manager2}, [ProcessWithParams(Uses, {}, name="r")],
                                    RunContext(run_dir=tmp_path))
    assert PipelineExecutor(controller).run() == {"r": ("result", 4.0)}


def test_standalone_display_is_shared_by_nested_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)  # not a terminal: the standalone manager goes plain
    assert get_progress_manager() is None
    with use_progress() as outer:
        with use_progress() as inner:
            assert inner is outer
        with outer.task("loop", total=2) as bar:
            bar.advance(2)
    assert get_progress_manager() is None
    assert not outer.running
    assert stream.getvalue().startswith("loop 2/2 100%")


def _median_ns(fn: Any, n: int) -> float:
    """Median per-call cost in ns, timed in batches of 1000 calls (timer overhead amortized)."""
    samples = []
    perf = time.perf_counter_ns
    batch = range(1000)
    for _ in range(n // 1000):
        t0 = perf()
        for _ in batch:
            fn()
        samples.append((perf() - t0) / 1000)
    return statistics.median(samples)


def test_advance_cost_vs_rich(capsys: pytest.CaptureFixture[str]) -> None:
    """Report the per-call cost of advance(); ours must not be slower than Rich's own."""
    from rich.progress import Progress

    buf = io.StringIO()
    manager = rich_manager(buf, refresh_per_second=4)
    n = 200_000
    manager.initialize()
    try:
        with manager.task("overall", total=1), manager.task("loop", total=n) as bar:
            ours = _median_ns(bar.advance, n)
    finally:
        manager.cleanup()
    bare = Progress(console=Console(file=io.StringIO(), force_terminal=True), refresh_per_second=4)
    with bare:
        task_id = bare.add_task("bare", total=n)
        theirs = _median_ns(lambda: bare.advance(task_id), n)
    none = ProgressManager(mode="none")
    none.initialize()
    with none.task("x", total=n) as null:
        free = _median_ns(null.advance, n)
    with capsys.disabled():
        print(f"\nadvance() median per call: tipi rich {ours:.0f} ns, bare rich.Progress.advance "
              f"{theirs:.0f} ns (lambda wrapper included), tipi none {free:.0f} ns")
    assert ours < theirs
    assert ours < 2_000 and free < 2_000


def test_log_handlers_write_above_the_display() -> None:
    """A handler holding the real stderr (Hydra's console handler does) goes through the display meanwhile."""
    original = sys.stderr
    handler = logging.StreamHandler(original)
    log = logging.getLogger("tipi.test.reroute")
    log.addHandler(handler)
    log.propagate = False
    buf = io.StringIO()
    manager = rich_manager(buf)
    try:
        manager.initialize()
        assert handler.stream is not original and handler.stream is sys.stderr  # Rich's proxy
        with manager.task("loop", total=1) as bar:
            log.warning("hello from a process")
            bar.advance()
        manager.cleanup()
        assert handler.stream is original
        assert "hello from a process" in ANSI.sub("", buf.getvalue())
    finally:
        log.removeHandler(handler)
        log.propagate = True
