"""The TensorBoard tracker: event files under ``<run dir>/tb/`` (``logger=tensorboard``).

Scalars carry the names and steps of ``metrics.jsonl``; figures are images;
the composed config is text; at the end of a successful run the flattened
config goes to the HParams plugin with the run's objective, so
``tensorboard --logdir multirun/<date>/<time>`` compares the jobs of a sweep.
A run directory that runs again appends to the same ``tb/``, skipping the
steps the earlier attempt already wrote (so no step appears twice).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tipi.core.record import RunStatus
from tipi.trackers.base import RunOutcome, StepFilter, Tracker, TrackerContext, TrackerFailed

log = logging.getLogger(__name__)

CONFIG_TAG = "config"


def written_steps(log_dir: Path) -> StepFilter:
    """The last step of every tag in the event files under ``log_dir`` (an earlier attempt's)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps = StepFilter()
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        try:
            for event in EventFileLoader(str(path)).Load():
                for value in event.summary.value:
                    steps.seen(value.tag, int(event.step))
        except Exception as exc:  # noqa: BLE001 - a file cut short by a crash: keep what was read
            log.debug("stopped reading %s: %s", path, exc)
    return steps


class TensorBoardTracker(Tracker):
    """Writes scalars, images, the config and hyperparameters with ``torch.utils.tensorboard``.

    Args:
        log_dir: the event files' directory, relative to the run directory.
        log_images: write figures (prediction grids, curves) as images.
        log_config: write the composed config as text (tag ``config``).
        log_hparams: at the end of a successful run, write the flattened
            config and the objective for TensorBoard's HParams tab.
        flush_secs: how often the writer flushes on its own (it also flushes
            whenever the logger's queue runs empty).
    """

    kind = "tensorboard"

    def __init__(
        self,
        log_dir: str = "tb",
        log_images: bool = True,
        log_config: bool = True,
        log_hparams: bool = True,
        flush_secs: float = 30.0,
    ) -> None:
        self.log_dir = log_dir
        self.log_images = log_images
        self.log_config = log_config
        self.log_hparams = log_hparams
        self.flush_secs = flush_secs
        self.writer: Any = None
        self.path: Path | None = None
        self.steps = StepFilter()
        self.last_step = 0
        self._context: TrackerContext | None = None

    def start(self, context: TrackerContext) -> dict[str, Any]:
        """Open a ``SummaryWriter`` on ``<run dir>/<log_dir>`` (appending on a resumed run)."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise TrackerFailed(
                f"needs the tensorboard package ({exc})", key=self.key, hint="pip install 'tipi[tensorboard]'"
            ) from exc
        self._context = context
        self.path = Path(context.run_dir) / self.log_dir
        if self.path.is_dir():
            self.steps = written_steps(self.path)
        self.writer = SummaryWriter(log_dir=str(self.path), flush_secs=int(self.flush_secs))
        if self.log_config and self.steps.after_resume(CONFIG_TAG, 0):
            # two leading spaces a line: TensorBoard's text plugin renders markdown
            text = "\n".join(f"    {line}" for line in context.config_yaml().splitlines())
            self.writer.add_text(CONFIG_TAG, text, global_step=0)
        return {"log_dir": self.log_dir}

    def log_metrics(self, values: Mapping[str, Any], step: int, wall_time: float | None = None) -> None:
        """One scalar per value, at ``step`` (steps an earlier attempt wrote are skipped)."""
        self.last_step = max(self.last_step, step)
        for name, value in values.items():
            if self.steps.after_resume(name, step):
                self.writer.add_scalar(name, value, global_step=step, walltime=wall_time)

    def log_image(self, key: str, path: Path, step: int, caption: str | None = None) -> None:
        """The PNG's bytes as an image summary (no decoding and re-encoding)."""
        if not self.log_images or not self.steps.after_resume(key, step):
            return
        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary

        with Image.open(path) as img:  # reads the header only
            width, height = img.size
            channels = len(img.getbands())
        image = Summary.Image(
            height=height, width=width, colorspace=channels, encoded_image_string=Path(path).read_bytes()
        )
        # the writer's own file writer: one event file a run (add_image would decode and re-encode the PNG)
        self._event_file().add_summary(Summary(value=[Summary.Value(tag=key, image=image)]), step)

    def _event_file(self) -> Any:
        """The writer's own file writer (``SummaryWriter`` opens it in ``__init__``; public attribute)."""
        events = self.writer.file_writer
        if events is None:
            raise TrackerFailed("the TensorBoard writer is closed")
        return events

    def flush(self) -> None:
        """Write the event file's buffer to disk."""
        self.writer.flush()

    def finish(self, outcome: RunOutcome) -> dict[str, Any]:
        """Write the hyperparameters with the objective (successful runs), then close the writer."""
        if self.log_hparams and outcome.status == RunStatus.SUCCEEDED and self._context is not None:
            self._write_hparams(outcome)
        self.writer.close()
        return {}

    def _write_hparams(self, outcome: RunOutcome) -> None:
        """Hyperparameters into this run's own event file, not a new timestamped subdirectory.

        ``SummaryWriter.add_hparams`` would open a second run per call; writing
        the plugin's three summaries here keeps one run per tipi run, whose
        scalar ``<objective>`` is the metric the HParams tab shows.
        """
        from torch.utils.tensorboard.summary import hparams

        assert self._context is not None
        metric = outcome.objective_key or "objective"
        value = outcome.objective
        metrics = {metric: value} if value is not None and math.isfinite(value) else {}
        experiment, start, end = hparams(self._context.flat_config, metrics)
        writer = self._event_file()
        for summary in (experiment, start, end):
            writer.add_summary(summary)
        if metrics and metric not in outcome.summary:  # the objective was a return value, never logged
            self.writer.add_scalar(metric, value, global_step=self.last_step)

    def abort(self) -> None:
        """Close the writer, ignoring errors."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()
