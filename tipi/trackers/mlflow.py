"""The MLflow tracker: one MLflow run per tipi run (``logger=mlflow``; needs ``pip install 'tipi[mlflow]'``).

The tracking URI comes from the config (default ``sqlite:///mlflow.db``); a
relative SQLite or file path is relative to the directory tipi was launched
from (Hydra's ``runtime.cwd``), like ``outputs/`` and ``multirun/``, so every
run and every job of a sweep lands in the same store, and ``mlflow ui``
started there finds it. Params are the flattened config, metrics keep
their steps, figures and the config are artifacts, ``run.tags`` are tags.
The jobs of a multirun share one experiment and carry the tags
``tipi.sweep_dir`` and ``tipi.job``. The run id goes into ``run.json``; a run
directory that runs again (resume, SLURM requeue) continues the same MLflow run.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tipi.core.errors import ConfigError, TipiError
from tipi.core.record import RunStatus
from tipi.trackers.base import RunOutcome, StepFilter, Tracker, TrackerContext, original_cwd

EXTRA_HINT = "Install the extra: pip install 'tipi[mlflow]'"
# MLflow's own tracking stores; plugins add theirs through the `mlflow.tracking_store` entry point.
BUILTIN_SCHEMES = (
    "databricks",
    "databricks-uc",
    "file",
    "http",
    "https",
    "mssql",
    "mysql",
    "postgresql",
    "sqlite",
    "uc",
)
# interrupted, requeued: KILLED (a resume reopens the run)
_END_STATUS: dict[str, str] = {RunStatus.SUCCEEDED: "FINISHED", RunStatus.FAILED: "FAILED"}


def known_schemes() -> list[str]:
    """The URI schemes a tracking URI may use: MLflow's and those of installed plugins."""
    try:
        plugins = [ep.name for ep in metadata.entry_points(group="mlflow.tracking_store")]
    except Exception:  # noqa: BLE001 - broken package metadata must not hide the built-in list
        plugins = []
    return sorted({*BUILTIN_SCHEMES, *plugins})


def check_tracking_uri(uri: str, key: str) -> None:
    """Raise a ``ConfigError`` naming ``key`` when ``uri``'s scheme is no tracking store's."""
    scheme = urlsplit(uri).scheme.lower().split("+", 1)[0]  # postgresql+psycopg2 -> postgresql
    if not scheme or len(scheme) == 1:  # a plain path (or a Windows drive letter): a file store
        return
    valid = known_schemes()
    if scheme not in valid:
        raise ConfigError.unknown(key, scheme, valid, "tracking URI scheme")


def resolve_tracking_uri(uri: str, base: Path) -> str:
    """``uri`` with a relative SQLite or file path made absolute against ``base`` (the launch directory)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "sqlite" and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri[len("sqlite:///") :]
        if path and path != ":memory:":
            return f"sqlite:///{(base / path).resolve()}"
    elif scheme == "file" and not parts.netloc and not parts.path.startswith("/"):
        return (base / parts.path).resolve().as_uri()
    elif not scheme or len(scheme) == 1:
        return (base / uri).resolve().as_uri()
    return uri


class MLflowTracker(Tracker):
    """Logs to one MLflow run through ``MlflowClient`` (no global active run, so jobs in one process never mix).

    Args:
        tracking_uri: where runs are stored: ``sqlite:///mlflow.db`` (relative
            to the launch directory), ``http://host:5000`` for a tracking server, ...
        experiment_name: the MLflow experiment (created when missing).
        run_name: the MLflow run's name; None: ``run.name`` (plus ``-<job>`` in a multirun).
        tags: extra ``{key: value}`` tags; each of ``run.tags`` is set as ``<tag>: "true"``.
        artifact_location: where a newly created experiment keeps artifacts (None: MLflow's default).
        log_params, log_images, log_config: send the flattened config as params,
            figures as artifacts under ``figures/``, the config as ``config.yaml``.
        http_retries, http_timeout: for an HTTP tracking server (MLflow's own
            defaults retry for minutes); ``MLFLOW_HTTP_REQUEST_*`` in the environment wins.
    """

    kind = "mlflow"

    def __init__(
        self,
        tracking_uri: str = "sqlite:///mlflow.db",
        experiment_name: str = "tipi",
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        artifact_location: str | None = None,
        log_params: bool = True,
        log_images: bool = True,
        log_config: bool = True,
        http_retries: int = 2,
        http_timeout: float = 10.0,
    ) -> None:
        if importlib.util.find_spec("mlflow") is None:
            raise TipiError(
                "logger=mlflow needs the mlflow package, which is not installed", key=self.key, hint=EXTRA_HINT
            )
        check_tracking_uri(str(tracking_uri), f"{self.key}.tracking_uri")
        self.tracking_uri = str(tracking_uri)
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.artifact_location = artifact_location
        self.log_params = log_params
        self.log_images = log_images
        self.log_config = log_config
        self.http_retries = int(http_retries)
        self.http_timeout = float(http_timeout)
        self.client: Any = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.steps = StepFilter()
        self._pending: list[Any] = []

    # -- start ----------------------------------------------------------------
    def start(self, context: TrackerContext) -> dict[str, Any]:
        """Create the MLflow run (or reopen the one an earlier attempt of this run directory created)."""
        try:
            from mlflow import MlflowClient
        except ImportError as exc:
            raise TipiError(f"logger=mlflow needs the mlflow package ({exc})", key=self.key, hint=EXTRA_HINT) from exc
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.http_retries))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(1, self.http_timeout))))
        uri = resolve_tracking_uri(self.tracking_uri, original_cwd())
        self.client = MlflowClient(tracking_uri=uri)
        previous = context.previous.get("run_id")
        if previous and context.previous.get("tracking_uri") == uri:
            self.run_id = self._reopen(str(previous))
        else:
            self.run_id = self._create(context)
        return {"run_id": self.run_id, "experiment_id": self.experiment_id, "tracking_uri": uri}

    def _experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(self.experiment_name, artifact_location=self.artifact_location))
        except MlflowException:  # another job of the sweep created it a moment ago
            found = self.client.get_experiment_by_name(self.experiment_name)
            if found is None:
                raise
            return str(found.experiment_id)

    def _create(self, context: TrackerContext) -> str:
        from mlflow.entities import Param

        self.experiment_id = self._experiment()
        name = self.run_name or context.name or "tipi"
        if self.run_name is None and context.job is not None:
            name = f"{name}-{context.job}"
        tags = {str(t): "true" for t in context.tags}
        tags.update({"tipi.run_dir": str(Path(context.run_dir).absolute()), **self.tags})
        if context.group:
            tags["tipi.group"] = str(context.group)
        if context.sweep_dir is not None:
            tags.update({"tipi.sweep_dir": context.sweep_dir, "tipi.job": str(context.job)})
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        run_id = str(run.info.run_id)
        if self.log_params:
            params = [Param(k[:250], str(v)[:6000]) for k, v in context.flat_config.items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params a request
                self.client.log_batch(run_id, params=params[i : i + 100])
        if self.log_config and context.config:
            self.client.log_text(run_id, context.config_yaml(), "config.yaml")
        return run_id

    def _reopen(self, run_id: str) -> str:
        """Mark the run running again and learn which steps it already has."""
        run = self.client.get_run(run_id)
        self.experiment_id = str(run.info.experiment_id)
        self.client.update_run(run_id, status="RUNNING")
        for key in run.data.metrics:
            for point in self.client.get_metric_history(run_id, key):
                self.steps.seen(key, int(point.step))
        return run_id

    # -- logging --------------------------------------------------------------
    def log_metrics(self, values: Mapping[str, Any], step: int, wall_time: float | None = None) -> None:
        """Buffer the values; :meth:`flush` sends them in one request."""
        from mlflow.entities import Metric

        now = int((time.time() if wall_time is None else wall_time) * 1000)
        self._pending += [Metric(k, float(v), now, step) for k, v in values.items() if self.steps.after_resume(k, step)]
        if len(self._pending) >= 1000:
            self.flush()

    def flush(self) -> None:
        """Send the buffered metrics (MLflow takes at most 1000 a request)."""
        while self._pending:
            batch, self._pending = self._pending[:1000], self._pending[1000:]
            self.client.log_batch(self.run_id, metrics=batch)

    def log_image(self, key: str, path: Path, step: int, caption: str | None = None) -> None:
        """The PNG as an artifact under ``figures/``."""
        if self.log_images:
            self.client.log_artifact(self.run_id, str(path), artifact_path="figures")

    def finish(self, outcome: RunOutcome) -> dict[str, Any]:
        """Send what is left and end the run: FINISHED, FAILED, or KILLED (interrupted: a resume reopens it)."""
        self.flush()
        status = _END_STATUS.get(str(outcome.status), "KILLED")
        self.client.set_terminated(self.run_id, status=status)
        return {"end_status": status}
