"""The lifecycle contract of DESIGN.md § The engine, with the exact order of hook calls."""

from __future__ import annotations

import gc
import importlib
import signal
import sys

import pytest

from tests.doubles import Recorder, RecordingPermanence, RecordingProcess
from tipi import (
    ConfigError,
    Interrupted,
    Permanence,
    PipelineController,
    PipelineExecutor,
    ProcessSpec,
)


def make(recorder: Recorder, fail: dict[str, str] | None = None, actions: tuple[str, ...] = ("ok", "ok")):
    fail = fail or {}
    perms = {n: RecordingPermanence(n, fail_in=fail.get(n), recorder=recorder) for n in ("a", "b", "c")}
    specs = [ProcessSpec(RecordingProcess, {"label": f"p{i}", "action": act}, name=f"p{i}")
             for i, act in enumerate(actions, start=1)]
    return PipelineController(perms, specs)


HEAD = ["a.initialize", "b.initialize", "c.initialize", "a.validate", "b.validate", "c.validate"]
CKPT = ["a.checkpoint", "b.checkpoint", "c.checkpoint"]
CLEAN = ["c.cleanup", "b.cleanup", "a.cleanup"]


def test_success_runs_everything_in_order() -> None:
    rec = Recorder()
    results = PipelineExecutor(make(rec)).run()
    assert rec.events == HEAD + ["p1.execute", *CKPT, "p2.execute", *CKPT] + CLEAN
    assert results == {"p1": 1.0, "p2": 1.0}


def test_process_error_cleans_up_in_reverse_and_surfaces_original() -> None:
    rec = Recorder()
    with pytest.raises(ValueError, match="p1 broke"):
        PipelineExecutor(make(rec, actions=("raise", "ok"))).run()
    assert rec.events == HEAD + ["p1.execute"] + CLEAN


def test_initialize_failing_halfway_cleans_up_only_the_initialized() -> None:
    rec = Recorder()
    with pytest.raises(RuntimeError, match="b.initialize failed") as info:
        PipelineExecutor(make(rec, fail={"b": "initialize"})).run()
    assert rec.events == ["a.initialize", "b.initialize", "a.cleanup"]
    assert "while initializing permanences.b" in info.value.__notes__


def test_failing_cleanup_does_not_stop_the_others_and_original_error_wins() -> None:
    rec = Recorder()
    with pytest.raises(ValueError, match="p1 broke") as info:
        PipelineExecutor(make(rec, fail={"b": "cleanup"}, actions=("raise",))).run()
    assert rec.events == HEAD + ["p1.execute"] + CLEAN
    assert [e.key for e in info.value.cleanup_errors] == ["permanences.b"]


def test_failing_cleanup_after_success_is_reported() -> None:
    rec = Recorder()
    with pytest.raises(Exception, match="cleanup") as info:
        PipelineExecutor(make(rec, fail={"c": "cleanup"}, actions=("ok",))).run()
    assert info.value.key == "permanences.c"
    assert rec.events[-3:] == CLEAN


def test_ctrl_c_checkpoints_then_cleans_up() -> None:
    rec = Recorder()
    with pytest.raises(Interrupted) as info:
        PipelineExecutor(make(rec, actions=("ctrl-c", "ok"))).run()
    assert info.value.exit_code == 130
    assert rec.events == HEAD + ["p1.execute", *CKPT] + CLEAN


def test_sigterm_during_a_process_checkpoints_then_cleans_up() -> None:
    rec = Recorder()
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as info:
        PipelineExecutor(make(rec, actions=("sigterm", "ok"))).run()
    assert info.value.exit_code == 143
    assert rec.events == HEAD + ["p1.execute", *CKPT] + CLEAN
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers are restored


def test_sigterm_inside_atomic_waits_for_the_block() -> None:
    rec = Recorder()
    with pytest.raises(Interrupted):
        PipelineExecutor(make(rec, actions=("sigterm-atomic", "ok"))).run()
    assert rec.events == HEAD + ["p1.execute", "p1.finished-step", *CKPT] + CLEAN


def test_skip_unless_force(tmp_path) -> None:
    rec = Recorder()
    marker = tmp_path / "done"
    marker.write_text("done")
    perms = {"a": RecordingPermanence("a", recorder=rec)}
    specs = [
        ProcessSpec(RecordingProcess, {"label": "skipped", "done_marker": str(marker)}),
        ProcessSpec(RecordingProcess, {"label": "forced", "done_marker": str(marker), "force": True}),
    ]
    PipelineExecutor(PipelineController(perms, specs)).run()
    assert rec.events == ["a.initialize", "a.validate", "forced.execute", "a.checkpoint", "a.cleanup"]


def test_get_permanence_checks_the_type_and_suggests_names() -> None:
    rec = Recorder()
    controller = PipelineController({"network": RecordingPermanence(recorder=rec)}, [])
    assert isinstance(controller.get_permanence("network", Permanence), RecordingPermanence)
    with pytest.raises(ConfigError, match="is a RecordingPermanence, but a int is required"):
        controller.get_permanence("network", int)
    with pytest.raises(ConfigError) as info:
        controller.get_permanence("netwrok")
    assert info.value.hint == "Did you mean 'network'?"


# The seed architecture's "programmatic testing example", as written there.
class MockDevice(Permanence):
    def cleanup(self) -> None:
        pass


class MockNetwork(Permanence):
    def cleanup(self) -> None:
        pass


class MockProcess(RecordingProcess):
    executed = False

    def execute(self) -> None:
        MockProcess.executed = True


def test_pipeline_execution() -> None:
    # Create mock permanences
    permanences = {
        "device": MockDevice(),
        "network": MockNetwork(),
        "progress_manager": None,  # Optional
    }

    # Create mock process specs
    process_specs = [
        ProcessSpec(
            MockProcess,
            {"force": False}
        )
    ]

    # Create controller
    controller = PipelineController(
        permanences,
        process_specs
    )

    # Execute
    executor = PipelineExecutor(controller)
    executor.run()

    # Verify results
    assert MockProcess.executed


class GcWatcher(Permanence):
    """Notes whether Python's cyclic garbage collector runs during its initialize()."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.gc_enabled_in_initialize: bool | None = None

    def initialize(self) -> None:
        self.gc_enabled_in_initialize = gc.isenabled()
        if self.fail:
            raise RuntimeError("initialize failed")

    def cleanup(self) -> None:
        """Nothing held."""


@pytest.mark.parametrize("fail", [False, True])
def test_the_cyclic_gc_is_paused_while_permanences_initialize_and_resumed_after(fail: bool) -> None:
    watcher = GcWatcher(fail=fail)
    controller = PipelineController({"w": watcher}, [])
    assert gc.isenabled()
    if fail:
        with pytest.raises(RuntimeError, match="initialize failed"):
            controller.initialize_permanences()
    else:
        controller.initialize_permanences()
    assert watcher.gc_enabled_in_initialize is False
    assert gc.isenabled(), "resumed, whatever happened"


def test_a_cyclic_gc_switched_off_by_the_user_stays_off() -> None:
    gc.disable()
    try:
        PipelineController({"w": GcWatcher()}, []).initialize_permanences()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_what_a_paused_block_imported_is_frozen_and_a_block_without_imports_freezes_nothing(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tipi.core.controller import cyclic_gc_paused

    (tmp_path / "tipi_gc_probe_module.py").write_text("TABLE = {i: [i] for i in range(1000)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    gc.unfreeze()
    try:
        with cyclic_gc_paused():
            pass
        assert gc.get_freeze_count() == 0, "nothing imported: nothing frozen"
        with cyclic_gc_paused():
            importlib.import_module("tipi_gc_probe_module")
        assert gc.get_freeze_count() > 1000, "the imported module's objects are out of the collector's way"
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        monkeypatch.delitem(sys.modules, "tipi_gc_probe_module", raising=False)
