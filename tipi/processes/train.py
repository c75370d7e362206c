"""The training step: epochs of training with validation, best checkpoint, early stopping.

Each step runs inside ``controller.atomic()``, so Ctrl-C, SIGTERM or a SLURM
signal lands on a step boundary and the checkpoint taken then resumes
exactly. The loss is accumulated on the device and read back every
``log_every_n_steps`` steps, not every step.
"""

from __future__ import annotations

import logging
import math
from typing import Any, ClassVar

from tipi.core.errors import ConfigError, TrainingDiverged
from tipi.core.process import PipelineProcess
from tipi.permanences.data import Data
from tipi.permanences.network import Network
from tipi.processes.common import bar, logger_of
from tipi.processes.result import save_predictions
from tipi.processes.validate import evaluate

log = logging.getLogger(__name__)


class TrainingProcess(PipelineProcess):
    """Trains ``network`` on ``data`` for ``epochs`` epochs, validating after each.

    ``on_nan``: a non-finite training loss stops training with ``TrainingDiverged``
    naming the step (``raise``, the default; the last checkpoint, written before
    it, is kept), or skips that batch's update and goes on (``skip``).
    """

    requires: ClassVar[dict[str, type]] = {"network": Network, "data": Data}

    def __init__(
        self,
        controller: Any,
        force: bool = False,
        epochs: int = 3,
        log_every_n_steps: int = 10,
        checkpoint_every_n_steps: int = 50,
        monitor: str = "val/mean_iou",
        monitor_mode: str = "max",
        early_stopping_patience: int | None = None,
        on_nan: str = "raise",
        figures_every_n_epochs: int = 1,
        num_figure_samples: int = 4,
    ) -> None:
        super().__init__(controller, force)
        if epochs < 1:
            raise ConfigError(f"must be at least 1, got {epochs}", key="processes.train.epochs")
        if monitor_mode not in ("max", "min"):
            raise ConfigError(f"must be 'max' or 'min', got '{monitor_mode}'", key="processes.train.monitor_mode")
        if on_nan not in ("raise", "skip"):
            raise ConfigError(f"must be 'raise' or 'skip', got '{on_nan}'", key="processes.train.on_nan")
        self.epochs = epochs
        self.log_every = max(1, log_every_n_steps)
        self.checkpoint_every = max(0, checkpoint_every_n_steps)
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.patience = early_stopping_patience
        self.on_nan = on_nan
        self.figures_every = figures_every_n_epochs
        self.num_figure_samples = num_figure_samples
        self.network = controller.get_permanence("network", Network)
        self.data = controller.get_permanence("data", Data)
        self.logger = logger_of(controller)

    def skip(self) -> bool:
        """Done when the checkpoint says training finished."""
        return bool(self.network.state.get("finished"))

    def execute(self) -> float | None:
        """Train (continuing from the checkpoint's epoch and step); return the best monitored value."""
        state = self.network.state
        if self.force and state.get("finished"):
            state.update(finished=False)
        steps = self.data.steps_per_epoch()
        if self.network.resumed_from is not None:
            log.info("resuming at epoch %d, step %d of %d", state["epoch"], state["epoch_step"], steps)
        with bar(self.controller, "epoch", total=self.epochs) as epochs_bar:
            epochs_bar.update(completed=state["epoch"])
            while state["epoch"] < self.epochs:
                epoch = state["epoch"]
                if state["epoch_step"] < steps:
                    self._train_epoch(epoch, steps)
                stop = self._end_epoch(epoch)
                epochs_bar.advance()
                if stop:
                    log.info("early stopping after epoch %d: no improvement in %d epochs", epoch, self.patience)
                    break
        state["finished"] = True
        return state["best_metric"]

    def _train_epoch(self, epoch: int, steps: int) -> None:
        import torch
        import torch.nn.functional as F

        net, state, controller = self.network, self.network.state, self.controller
        model, optimizer, scaler, device = net.model, net.optimizer, net.scaler, net.device
        assert model is not None and optimizer is not None
        model.train()
        running = torch.zeros((), device=device)
        count = 0
        loader = self.data.loader("train", epoch=epoch, start_batch=state["epoch_step"])
        with bar(controller, "train-val", total=steps) as train_bar:
            train_bar.update(completed=state["epoch_step"], status=f"epoch {epoch + 1}/{self.epochs}")
            for images, masks in loader:
                with controller.atomic():
                    images = images.to(device, non_blocking=True)
                    masks = masks.to(device, non_blocking=True)
                    optimizer.zero_grad(set_to_none=True)
                    with net.autocast():
                        loss = F.cross_entropy(model(images), masks)
                    # on_nan=skip pays one host sync a step so that a bad batch never reaches the weights.
                    skipped = self.on_nan == "skip" and not bool(torch.isfinite(loss.detach()))
                    if skipped:
                        log.warning("training loss is %s at step %d; the step is skipped",
                                    float(loss.detach()), state["step"] + 1)
                    elif scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        loss.backward()
                        optimizer.step()
                    state["step"] += 1
                    state["epoch_step"] += 1
                    if not skipped:
                        running += loss.detach()
                        count += 1
                    if count and (state["step"] % self.log_every == 0 or state["epoch_step"] == steps):
                        self._log_train(running, count, optimizer)
                        running.zero_()
                        count = 0
                    if self.checkpoint_every and state["step"] % self.checkpoint_every == 0:
                        self._check_finite(running, count)  # never checkpoint weights a NaN has touched
                        controller.checkpoint_permanences()
                train_bar.advance()

    def _check_finite(self, running: Any, count: int) -> None:
        if count and not bool(running.isfinite()):
            self._diverged(float(running), count)

    def _diverged(self, value: float, count: int = 1) -> None:
        """Stop (``on_nan=raise``) or warn (``skip``), naming the step, or the steps since the last check."""
        step = self.network.state["step"]
        # The loss is read back every few steps, so a NaN is known to lie in that window.
        where = f"step {step}" if count <= 1 else f"steps {step - count + 1}..{step}"
        if self.on_nan == "raise":
            raise TrainingDiverged(
                f"the training loss is {value} at {where} (epoch {self.network.state['epoch']}); "
                "training stopped, the last good checkpoint is kept",
                key="processes.train",
                hint="Lower optimizer.lr, or set processes.train.on_nan=skip to skip the update of such a batch.",
            )
        log.warning("training loss is %s at %s", value, where)

    def _log_train(self, running: Any, count: int, optimizer: Any) -> None:
        mean = float(running.item()) / max(count, 1)  # the one host sync every log_every steps
        if not math.isfinite(mean):
            self._diverged(mean, count)
        if self.logger is not None:
            self.logger.log({"train/loss": mean, "train/lr": optimizer.param_groups[0]["lr"],
                             "epoch": self.network.state["epoch"]}, step=self.network.state["step"])

    def _end_epoch(self, epoch: int) -> bool:
        """Validate, keep the best weights, draw figures, checkpoint; True to stop early."""
        net, state = self.network, self.network.state
        metrics = evaluate(net.model, net, self.data, "val", self.controller)
        logged = {f"val/{k}": v for k, v in metrics.items()}
        if self.logger is not None:
            self.logger.log({**logged, "epoch": epoch}, step=state["step"])
        value = logged.get(self.monitor)
        if value is None:
            raise ConfigError(f"'{self.monitor}' is not a validation metric. Valid: {', '.join(sorted(logged))}",
                              key="processes.train.monitor")
        best = state["best_metric"]
        improved = best is None or (value > best if self.monitor_mode == "max" else value < best)
        if improved:
            state["best_metric"] = value
            state["bad_epochs"] = 0
            net.save_best()
        else:
            state["bad_epochs"] += 1
        if net.scheduler is not None:
            net.scheduler.step()
        state["history"].append({"epoch": epoch, "step": state["step"], **logged})
        if self.figures_every and (epoch + 1) % self.figures_every == 0:
            path = self.controller.context.figures_dir / f"predictions_epoch_{epoch + 1:03d}.png"
            save_predictions(net, self.data, path, self.num_figure_samples)
            if self.logger is not None:
                self.logger.log_image("predictions_epoch", path, step=state["step"])
        state["epoch"] = epoch + 1
        state["epoch_step"] = 0
        self.controller.checkpoint_permanences()
        return self.patience is not None and state["bad_epochs"] >= self.patience
