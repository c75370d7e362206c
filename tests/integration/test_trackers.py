"""TensorBoard and MLflow beside WandB, several at once, through the real CLI.

What each tracker stored is read back with the library's own reader
(``tbparse`` / TensorBoard's ``EventAccumulator``, ``MlflowClient``) and
compared with ``metrics.jsonl``: same names, steps and values. The tracker
doubles at the top are injected through the config
(``+logger.trackers.<name>._target_=tests.integration.test_trackers.<Double>``),
so a failure mid-run is deterministic and works as root (no chmod).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, RunTipi, read_json, read_jsonl, run_dirs, tipi_env
from tipi.trackers.base import Tracker, TrackerContext
from tipi.trackers.tensorboard import TensorBoardTracker

FAST = ("+experiment=seg", "debug=fast", "progress=none")
# 8 steps, each logged, a checkpoint every 4: a SIGKILL after step 6 repeats steps 5 and 6 on the next attempt.
EVERY_STEP = ("processes.train.log_every_n_steps=1", "processes.train.checkpoint_every_n_steps=4",
              "processes.train.epochs=2", "processes.train.figures_every_n_epochs=0", "~processes.result")
DOUBLES = "tests.integration.test_trackers"


# -- doubles, built by the run from the config --------------------------------------------------
class KillAt(Tracker):
    """SIGKILLs a process group (``pgid``), or the run itself (``pgid=0``), once ``step`` is logged.

    With ``marker``, only the first attempt kills (the same command run again goes through).
    """

    kind = "kill_at"

    def __init__(self, step: int, pgid: int = 0, marker: str | None = None) -> None:
        self.step = step
        self.pgid = pgid
        self.marker = Path(marker) if marker else None
        self.fired = bool(self.marker and self.marker.exists())

    def start(self, context: TrackerContext) -> dict[str, Any]:
        return {}

    def log_metrics(self, values: Mapping[str, Any], step: int, wall_time: float | None = None) -> None:
        if step >= self.step and not self.fired:
            self.fired = True
            if self.marker:
                self.marker.write_text("fired")
            if self.pgid:
                os.killpg(self.pgid, signal.SIGKILL)
            else:
                os.kill(os.getpid(), signal.SIGKILL)


class FullDiskTensorBoard(TensorBoardTracker):
    """The TensorBoard tracker on a disk that fills up at step ``fail_at_step``."""

    def __init__(self, fail_at_step: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_at_step = fail_at_step

    def log_metrics(self, values: Mapping[str, Any], step: int, wall_time: float | None = None) -> None:
        if step >= self.fail_at_step:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        super().log_metrics(values, step, wall_time)


# -- readers ------------------------------------------------------------------------------------
Point = tuple[str, int, float]


def jsonl_points(run_dir: Path) -> list[Point]:
    """Every (name, step, value) of ``metrics.jsonl``, sorted."""
    points = []
    for row in read_jsonl(run_dir / "metrics.jsonl"):
        if "image" in row:
            continue
        points += [(k, row["step"], float(v)) for k, v in row.items()
                   if k not in ("step", "time") and isinstance(v, (int, float))]
    return sorted(points)


def tb_points(log_dir: Path) -> list[Point]:
    """Every scalar TensorBoard's files hold, read with tbparse."""
    from tbparse import SummaryReader

    frame = SummaryReader(str(log_dir), pivot=False).scalars
    return sorted((str(t), int(s), float(v)) for t, s, v in zip(frame["tag"], frame["step"], frame["value"],
                                                                    strict=True))


def tb_accumulator(log_dir: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    return acc


def tb_hparams(log_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The hyperparameters (session start info) and the metric names (experiment) of the HParams plugin."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = tb_accumulator(log_dir).PluginTagToContent("hparams")
    data = {tag: plugin_data_pb2.HParamsPluginData.FromString(raw) for tag, raw in content.items()}
    start = data["_hparams_/session_start_info"].session_start_info.hparams
    metrics = [m.name.tag for m in data["_hparams_/experiment"].experiment.metric_infos]
    return {k: v.number_value if v.HasField("number_value") else v.string_value for k, v in start.items()}, metrics


def mlflow_points(client: Any, run_id: str, raw: bool = False) -> list[Point]:
    """Every distinct metric point of an MLflow run.

    MLflow keeps one row per (name, step, value, timestamp in ms): ``epoch`` logged twice at one
    step within a millisecond is one point there, so MLflow is compared with :func:`distinct`.
    """
    keys = client.get_run(run_id).data.metrics
    points = [(k, int(m.step), float(m.value)) for k in keys for m in client.get_metric_history(run_id, k)]
    return sorted(points) if raw else distinct(points)


def distinct(points: list[Point]) -> list[Point]:
    return sorted(set(points))


def assert_same_points(got: list[Point], expected: list[Point], rel: float = 1e-6) -> None:
    """Same names and steps; values equal to float32 precision (TensorBoard stores float32)."""
    assert [p[:2] for p in got] == [p[:2] for p in expected]
    for (name, step, value), (_, _, want) in zip(got, expected, strict=True):
        assert value == pytest.approx(want, rel=rel, abs=1e-7), (name, step)


def assert_no_repeated_steps(points: list[Point], prefix: str = "train/") -> None:
    keys = [p[:2] for p in points if p[0].startswith(prefix)]
    assert keys and len(keys) == len(set(keys)), "a step written twice"


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables created once (MLflow's migrations take seconds)."""
    pytest.importorskip("mlflow", reason="the tipi[mlflow] extra is not installed")
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_db(tmp_path: Path, empty_mlflow_db: Path) -> Path:
    """``mlflow.db`` in the test's working directory, where ``sqlite:///mlflow.db`` points."""
    shutil.copy(empty_mlflow_db, tmp_path / "mlflow.db")
    return tmp_path / "mlflow.db"


def server_env(work: Path) -> dict[str, str]:
    """The server's environment (SQLAlchemy 2 since hydra-optuna-sweeper's pin left: ``mlflow server`` starts)."""
    del work
    return tipi_env()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mlflow_server(tmp_path: Path, empty_mlflow_db: Path) -> Iterator[tuple[str, int]]:
    """A real ``mlflow server`` on 127.0.0.1 (its own process group); yields (URI, process group id)."""
    import urllib.request

    work = tmp_path / "server"
    work.mkdir()
    shutil.copy(empty_mlflow_db, work / "server.db")
    port = free_port()
    log = open(work / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{work / 'server.db'}", "--artifacts-destination", str(work / "artifacts")],
        cwd=work, env=server_env(work), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not come up:\n{(work / 'server.log').read_text()[-3000:]}")
            time.sleep(0.25)
        yield uri, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()


def client_for(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


# -- tests --------------------------------------------------------------------------------------
def test_wandb_tensorboard_and_mlflow_at_once_hold_what_metrics_jsonl_holds(run_tipi: RunTipi, tmp_path: Path,
                                                                           mlflow_db: Path) -> None:
    run_tipi(*FAST, "logger=[wandb,tensorboard,mlflow]", "run.tags=[mine]", "optimizer.lr=0.002",
             "processes.train.figures_every_n_epochs=1", check=True)
    [run_dir] = run_dirs(tmp_path / "outputs")
    record = read_json(run_dir / "run.json")
    expected = jsonl_points(run_dir)
    assert {p[0] for p in expected} >= {"train/loss", "val/mean_iou", "test/mean_iou"}
    trackers = record["trackers"]
    assert {n: e["status"] for n, e in trackers.items()} == dict.fromkeys(("wandb", "tensorboard", "mlflow"),
                                                                          "succeeded")
    assert record["wandb_run_id"] == trackers["wandb"]["run_id"]

    # TensorBoard: the scalars of metrics.jsonl, the figures as images, the config, the hparams with the objective.
    tb = run_dir / "tb"
    assert_same_points(tb_points(tb), expected)
    acc = tb_accumulator(tb)
    assert set(acc.Tags()["images"]) == {"predictions_epoch", "predictions", "curves"}
    grid = (run_dir / "figures" / "predictions_final.png").read_bytes()
    assert acc.Images("predictions")[0].encoded_image_string == grid
    assert "optimizer" in acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    hparams, metric_names = tb_hparams(tb)
    assert hparams["optimizer.lr"] == pytest.approx(0.002) and metric_names == ["test/mean_iou"]

    # MLflow: in ./mlflow.db (relative to where tipi was launched), params, metrics with steps, artifacts, tags.
    entry = trackers["mlflow"]
    assert entry["tracking_uri"] == f"sqlite:///{mlflow_db.resolve()}" and entry["end_status"] == "FINISHED"
    client = client_for(entry["tracking_uri"])
    run = client.get_run(entry["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "tipi"
    assert run.data.params["optimizer.lr"] == "0.002" and run.data.tags["mine"] == "true"
    assert_same_points(mlflow_points(client, entry["run_id"]), distinct(expected), rel=1e-12)
    artifacts = {a.path for a in client.list_artifacts(entry["run_id"])}
    figures = {a.path for a in client.list_artifacts(entry["run_id"], "figures")}
    assert "config.yaml" in artifacts and "figures/predictions_final.png" in figures


@pytest.mark.slow
def test_a_two_job_multirun_gives_two_runs_in_each_tracker(run_tipi: RunTipi, tmp_path: Path,
                                                           mlflow_db: Path) -> None:
    run_tipi("-m", *FAST, "~processes.result", "logger=[tensorboard,mlflow]", "seed=1,2", check=True)
    jobs = run_dirs(tmp_path / "multirun")
    assert len(jobs) == 2
    sweep_dir = jobs[0].parent
    # TensorBoard pointed at the sweep sees one run a job, each with its hparams and objective.
    for job in jobs:
        hparams, metrics = tb_hparams(job / "tb")
        assert hparams["seed"] == read_json(job / "run.json")["seed"] and metrics == ["test/mean_iou"]
        assert_same_points(tb_points(job / "tb"), jsonl_points(job))
    client = client_for(f"sqlite:///{mlflow_db}")
    runs = client.search_runs([client.get_experiment_by_name("tipi").experiment_id],
                              filter_string=f"tags.`tipi.sweep_dir` = '{sweep_dir.absolute()}'")
    assert sorted(r.info.run_name for r in runs) == ["tipi-0", "tipi-1"]
    assert {r.info.run_id for r in runs} == {read_json(j / "run.json")["trackers"]["mlflow"]["run_id"] for j in jobs}


def test_a_killed_run_run_again_continues_the_same_mlflow_run_without_repeating_steps(
        run_tipi: RunTipi, tmp_path: Path, mlflow_db: Path) -> None:
    args = (*FAST, *EVERY_STEP, "logger=[tensorboard,mlflow]", "logger.flush_every=0", "hydra.run.dir=run",
            f"+logger.trackers.kill._target_={DOUBLES}.KillAt", "+logger.trackers.kill.step=6",
            f"+logger.trackers.kill.marker={tmp_path / 'killed-once'}")
    killed = run_tipi(*args)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_dir = tmp_path / "run"
    first = read_json(run_dir / "run.json")["trackers"]["mlflow"]["run_id"]
    before = {p[:2] for p in tb_points(run_dir / "tb")}
    run_tipi(*args, check=True)  # the same command again (a requeue); this time nobody kills it
    record = read_json(run_dir / "run.json")
    assert record["status"] == "succeeded" and len(record["attempts"]) == 2
    assert record["trackers"]["mlflow"]["run_id"] == first
    expected = {p[:2] for p in jsonl_points(run_dir)}  # metrics.jsonl repeats the steps after the checkpoint
    tb = tb_points(run_dir / "tb")
    assert {p[:2] for p in tb} == expected and before < expected
    assert_no_repeated_steps(tb)
    assert len(list((run_dir / "tb").glob("events.out.tfevents.*"))) == 2  # one file an attempt, one directory
    client = client_for(record["trackers"]["mlflow"]["tracking_uri"])
    assert client.get_run(first).info.status == "FINISHED"
    assert len(client.search_runs([client.get_run(first).info.experiment_id])) == 1
    logged = mlflow_points(client, first, raw=True)
    assert {p[:2] for p in logged} == expected
    assert_no_repeated_steps(logged)


def test_a_tracker_that_breaks_mid_run_is_dropped_once_and_the_run_goes_on(run_tipi: RunTipi, tmp_path: Path,
                                                                          mlflow_db: Path) -> None:
    proc = run_tipi(*FAST, *EVERY_STEP, "logger=[tensorboard,mlflow]",
                    f"logger.trackers.tensorboard._target_={DOUBLES}.FullDiskTensorBoard",
                    "+logger.trackers.tensorboard.fail_at_step=3", check=True)
    [run_dir] = run_dirs(tmp_path / "outputs")
    record = read_json(run_dir / "run.json")
    assert record["status"] == "succeeded"
    entry = record["trackers"]["tensorboard"]
    assert entry["status"] == "failed" and "No space left on device" in entry["error"]
    log = proc.stdout + proc.stderr + (run_dir / "tipi.log").read_text()
    lines = [line for line in log.splitlines() if "tracker 'tensorboard' failed" in line]
    assert len({line.split(" - ")[-1] for line in lines}) == 1, log  # one message (console and file may both show it)
    assert "Traceback" not in proc.stderr
    # TensorBoard kept what it wrote before; metrics.jsonl and MLflow have every step.
    assert max(step for _, step, _ in tb_points(run_dir / "tb")) < 3
    expected = jsonl_points(run_dir)
    assert max(step for _, step, _ in expected) == 8
    mlflow = record["trackers"]["mlflow"]
    assert_same_points(mlflow_points(client_for(mlflow["tracking_uri"]), mlflow["run_id"]), distinct(expected),
                       rel=1e-12)


@pytest.mark.slow
def test_mlflow_against_a_tracking_server_and_the_server_dying_mid_run(run_tipi: RunTipi, tmp_path: Path,
                                                                     mlflow_server: tuple[str, int]) -> None:
    uri, pgid = mlflow_server
    run_tipi(*FAST, "logger=mlflow", f"logger.trackers.mlflow.tracking_uri={uri}", "hydra.run.dir=served",
             check=True)
    entry = read_json(tmp_path / "served" / "run.json")["trackers"]["mlflow"]
    client = client_for(uri)
    assert entry["tracking_uri"] == uri and client.get_run(entry["run_id"]).info.status == "FINISHED"
    assert_same_points(mlflow_points(client, entry["run_id"]), distinct(jsonl_points(tmp_path / "served")),
                       rel=1e-12)
    assert "figures/predictions_final.png" in {a.path for a in client.list_artifacts(entry["run_id"], "figures")}

    # The server is killed at step 4; the run finishes, metrics.jsonl has every step, run.json says what broke.
    start = time.monotonic()
    proc = run_tipi(*FAST, *EVERY_STEP, "logger=mlflow", f"logger.trackers.mlflow.tracking_uri={uri}",
                    "logger.trackers.mlflow.http_timeout=2", "logger.finish_timeout=30", "logger.flush_every=0",
                    f"+logger.trackers.kill._target_={DOUBLES}.KillAt", "+logger.trackers.kill.step=4",
                    f"+logger.trackers.kill.pgid={pgid}", "hydra.run.dir=orphaned", check=True)
    record = read_json(tmp_path / "orphaned" / "run.json")
    assert record["status"] == "succeeded" and record["trackers"]["mlflow"]["status"] == "failed"
    assert record["trackers"]["mlflow"]["error"]
    assert "tracker 'mlflow' failed" in proc.stdout + proc.stderr
    assert max(p[1] for p in jsonl_points(tmp_path / "orphaned")) == 8
    assert time.monotonic() - start < 200


def hidden_mlflow_env(tmp_path: Path) -> dict[str, str]:
    """A subprocess environment in which ``import mlflow`` fails as if the extra were not installed."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['mlflow'] = None  # hide the installed mlflow\n")
    return tipi_env(PYTHONPATH=os.pathsep.join([str(shim), str(REPO)]))


@pytest.mark.parametrize(("args", "expected"), [
    (("logger=mlflow", "logger.trackers.mlflow.tracking_uri=sqlit:///runs.db"),
     ["logger.trackers.mlflow.tracking_uri", "unknown tracking URI scheme 'sqlit'", "Did you mean 'sqlite'"]),
    (("logger=mlflow", "hidden"), ["logger.trackers.mlflow", "pip install 'tipi[mlflow]'"]),
    (("+logger.trackers.tensorbord.log_dir=tb",),
     ["logger.trackers.tensorbord", "unknown tracker 'tensorbord'", "Did you mean 'tensorboard'"]),
    (("logger=[tensorboard,tensorbord]",),
     ["logger: unknown option 'tensorbord'. Valid: mlflow, none, tensorboard, wandb", "Did you mean 'tensorboard'"]),
])
def test_bad_tracker_input_is_one_clear_message_before_anything_runs(run_tipi: RunTipi, tmp_path: Path,
                                                                     args: tuple[str, ...],
                                                                     expected: list[str]) -> None:
    env = hidden_mlflow_env(tmp_path) if "hidden" in args else None
    proc = run_tipi(*FAST, *(a for a in args if a != "hidden"), env=env)
    assert proc.returncode != 0
    for text in expected:
        assert text in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("metrics.jsonl")) and not list(tmp_path.rglob("*.pt"))
