"""The tracker hub: every tracker gets every value in order, off the caller's thread; one that fails is dropped."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tipi.core.errors import ConfigError
from tipi.trackers.base import RunOutcome, Tracker, TrackerContext, TrackerFailed, flatten
from tipi.trackers.hub import TrackerHub
from tipi.trackers.mlflow import check_tracking_uri, resolve_tracking_uri


class Recording(Tracker):
    """Records what it is given; raises ``error`` from the method named ``fail_in`` (at step ``fail_at``)."""

    def __init__(self, fail_in: str | None = None, fail_at: int = 0, error: Exception | None = None,
                 block: threading.Event | None = None) -> None:
        self.fail_in, self.fail_at = fail_in, fail_at
        self.error = error or OSError(28, "No space left on device")
        self.block = block
        self.calls: list[tuple[Any, ...]] = []
        self.threads: set[str] = set()

    def _maybe_fail(self, method: str, step: int = 0) -> None:
        if method != "start":  # start() runs on the caller's thread, before anything is logged
            self.threads.add(threading.current_thread().name)
        if self.fail_in == method and step >= self.fail_at:
            raise self.error

    def start(self, context: TrackerContext) -> dict[str, Any]:
        self._maybe_fail("start")
        return {"run_id": f"id-{self.name}"}

    def log_metrics(self, values: Mapping[str, Any], step: int, wall_time: float | None = None) -> None:
        self._maybe_fail("log_metrics", step)
        self.calls.append(("metrics", dict(values), step))

    def log_image(self, key: str, path: Path, step: int, caption: str | None = None) -> None:
        self.calls.append(("image", key, step))

    def finish(self, outcome: RunOutcome) -> dict[str, Any]:
        if self.block is not None:
            self.block.wait(30)
        self._maybe_fail("finish")
        self.calls.append(("finish", str(outcome.status)))
        return {"end": "ok"}

    def abort(self) -> None:
        self.calls.append(("abort",))


def context_for(tracker: Tracker) -> TrackerContext:
    return TrackerContext(run_dir=Path("."))


def test_every_tracker_gets_every_value_in_order_off_the_callers_thread() -> None:
    a, b = Recording(), Recording()
    hub = TrackerHub({"a": a, "b": b}, flush_every=0.05)
    assert hub.start(context_for) == {"a": {"run_id": "id-a"}, "b": {"run_id": "id-b"}}
    for step in range(5):
        hub.metrics({"loss": 1.0 / (step + 1)}, step)
    hub.image("grid", Path("grid.png"), 4, None)
    assert hub.finish(RunOutcome()) == {"a": {"end": "ok"}, "b": {"end": "ok"}}
    expected = [*(("metrics", {"loss": 1.0 / (s + 1)}, s) for s in range(5)), ("image", "grid", 4),
                ("finish", "succeeded")]
    assert a.calls == expected and b.calls == expected
    assert a.threads == {"tipi-trackers"}
    assert hub.take_failures() == {}


def test_a_tracker_that_raises_is_reported_once_and_dropped_the_others_go_on(
        caplog: pytest.LogCaptureFixture) -> None:
    broken, healthy = Recording(fail_in="log_metrics", fail_at=2), Recording()
    hub = TrackerHub({"broken": broken, "healthy": healthy}, flush_every=0)
    hub.start(context_for)
    with caplog.at_level(logging.WARNING, logger="tipi.trackers"):
        for step in range(6):
            hub.metrics({"loss": float(step)}, step)
        finished = hub.finish(RunOutcome())
    assert [c[2] for c in broken.calls if c[0] == "metrics"] == [0, 1] and broken.calls[-1] == ("abort",)
    assert [c[2] for c in healthy.calls if c[0] == "metrics"] == list(range(6))
    assert set(finished) == {"healthy"}
    failures = hub.take_failures()
    assert list(failures) == ["broken"] and "No space left on device" in failures["broken"]
    warnings = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
    assert len(warnings) == 1 and "dropped" in warnings[0]


def test_finish_waits_at_most_finish_timeout_for_a_tracker_that_hangs() -> None:
    release = threading.Event()
    hub = TrackerHub({"hung": Recording(block=release)}, finish_timeout=0.5)
    hub.start(context_for)
    hub.metrics({"loss": 1.0}, 0)
    start = time.monotonic()
    try:
        assert hub.finish(RunOutcome()) == {}
        assert time.monotonic() - start < 20  # generous: the point is "not 30 s"
        assert "still busy after finish_timeout=0.5 s" in hub.take_failures()["hung"]
    finally:
        release.set()


def test_a_tracker_that_cannot_start_names_its_key_and_the_started_ones_are_aborted() -> None:
    first, second = Recording(), Recording(fail_in="start", error=ConnectionError("refused"))
    hub = TrackerHub({"first": first, "second": second})
    with pytest.raises(TrackerFailed) as info:
        hub.start(context_for)
    assert info.value.key == "logger.trackers.second" and "refused" in info.value.message
    assert first.calls == [("abort",)] and not hub.active


def test_flattened_config_leaves_are_what_tensorboard_and_mlflow_accept() -> None:
    flat = flatten({"optimizer": {"lr": 0.1, "betas": [0.9, 0.99]}, "run": {"group": None, "tags": []}, "seed": 3})
    assert flat == {"optimizer.lr": 0.1, "optimizer.betas": "[0.9, 0.99]", "run.group": "null", "run.tags": "[]",
                    "seed": 3}


def test_mlflow_tracking_uris_are_checked_and_resolved_against_the_launch_directory(tmp_path: Path) -> None:
    for uri in ("sqlite:///mlflow.db", "http://127.0.0.1:5000", "postgresql+psycopg2://u@h/db", "mlruns"):
        check_tracking_uri(uri, "logger.trackers.mlflow.tracking_uri")
    with pytest.raises(ConfigError) as info:
        check_tracking_uri("htp://host:5000", "logger.trackers.mlflow.tracking_uri")
    assert info.value.key == "logger.trackers.mlflow.tracking_uri" and info.value.hint == "Did you mean 'http'?"
    assert resolve_tracking_uri("sqlite:///mlflow.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_tracking_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"
    assert resolve_tracking_uri("mlruns", tmp_path) == (tmp_path / "mlruns").resolve().as_uri()
    assert resolve_tracking_uri("http://h:5000", tmp_path) == "http://h:5000"
