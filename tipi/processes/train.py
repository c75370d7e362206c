"""The training step: epochs of training with validation, best checkpoint, early stopping.

Each step runs inside ``controller.atomic()``, so Ctrl-C, SIGTERM or a SLURM
signal lands on a step boundary and the checkpoint taken then resumes
exactly. The loss is accumulated on the device and read back every
``log_every_n_steps`` steps, not every step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from tipi.core import trial
from tipi.core.check import ConfigCheck
from tipi.core.errors import ConfigError, TrainingDiverged
from tipi.core.process import PipelineProcess
from tipi.distributed import all_reduce_sum, get_world_size, is_main_process
from tipi.permanences.data import Data
from tipi.permanences.network import Network
from tipi.processes.common import bar, logger_of, pixel_cross_entropy
from tipi.processes.result import save_predictions
from tipi.processes.validate import eval_metric_names, evaluate

log = logging.getLogger(__name__)


class TrainingProcess(PipelineProcess):
    """Trains ``network`` on ``data`` for ``epochs`` epochs, validating after each.

    ``on_nan``: a non-finite training loss stops training with ``TrainingDiverged``
    naming the step (``raise``, the default; the last checkpoint, written before
    it, is kept), or skips that batch's update and goes on (``skip``).
    """

    requires: ClassVar[dict[str, type]] = {"network": Network, "data": Data}
    metrics = ("train/loss", "train/lr", "epoch", *eval_metric_names("val"))

    def __init__(
        self,
        controller: Any,
        force: bool = False,
        epochs: int = 3,
        log_every_n_steps: int = 10,
        checkpoint_every_n_steps: int = 50,
        monitor: str = "val/mean_iou",
        monitor_mode: Literal["max", "min"] = "max",
        early_stopping_patience: int | None = None,
        on_nan: Literal["raise", "skip"] = "raise",
        figures_every_n_epochs: int = 1,
        num_figure_samples: int = 4,
    ) -> None:
        super().__init__(controller, force)
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

    @classmethod
    def check_config(cls, params: Mapping[str, Any], check: ConfigCheck) -> None:
        """Ranges, and ``monitor`` among the validation metrics training logs (before anything runs)."""
        at_least = {
            "epochs": (1, ""),
            "log_every_n_steps": (1, ""),
            "num_figure_samples": (1, ""),
            "checkpoint_every_n_steps": (0, " (0: a checkpoint at the end of each epoch only)"),
            "figures_every_n_epochs": (0, " (0: no figures during training)"),
        }
        for name, (low, meaning) in at_least.items():
            value = params.get(name, low)
            check.require(value >= low, name, f"must be at least {low}{meaning}, got {value}")
        patience = params.get("early_stopping_patience")
        check.require(
            patience is None or patience >= 1,
            "early_stopping_patience",
            f"must be at least 1 (or null for no early stopping), got {patience}",
        )
        check.require_metric("monitor", params.get("monitor", "val/mean_iou"), eval_metric_names("val"))

    def skip(self) -> bool:
        """Done when the checkpoint says training finished ``epochs`` epochs (a resume may ask for more)."""
        state = self.network.state
        return bool(state.get("finished")) and (state["epoch"] >= self.epochs or bool(state.get("stopped_early")))

    def execute(self) -> float | None:
        """Train (continuing from the checkpoint's epoch and step); return the best monitored value."""
        state = self.network.state
        if self.force and state.get("finished"):
            state.update(finished=False)
        steps = self.data.steps_per_epoch()
        if self.network.resumed_from is not None:
            log.info(  # counted from 1, as the epoch bar counts
                "resuming in epoch %d/%d at step %d/%d", state["epoch"] + 1, self.epochs, state["epoch_step"], steps
            )
        with bar(self.controller, "epoch", total=self.epochs) as epochs_bar:
            epochs_bar.update(completed=state["epoch"])
            while state["epoch"] < self.epochs:
                epoch = state["epoch"]
                if state["epoch_step"] < steps:
                    self._train_epoch(epoch, steps, epochs_bar)
                stop = self._end_epoch(epoch)
                # next to the running loss, as Lightning's bar shows them: "loss 0.123  val/mean_iou 0.456"
                epochs_bar.update(postfix={self.monitor: state["history"][-1][self.monitor]})
                epochs_bar.advance()
                if stop:
                    state["stopped_early"] = True
                    log.info(
                        "early stopping after epoch %d/%d: no improvement in %d epochs",
                        epoch + 1,
                        self.epochs,
                        self.patience,
                    )
                    break
        state["finished"] = True
        return state["best_metric"]

    def _train_epoch(self, epoch: int, steps: int, epochs_bar: Any) -> None:
        import torch

        net, state, controller = self.network, self.network.state, self.controller
        model, optimizer, device = net.model, net.optimizer, net.device
        assert model is not None and optimizer is not None
        model.train()
        # Each step's loss stays on the device (no host sync) until the next log: appending a detached
        # tensor is the least a step can do; they are summed once every log_every_n_steps.
        losses: list[torch.Tensor] = []
        loader = self.data.loader("train", epoch=epoch, start_batch=state["epoch_step"])
        with bar(controller, "batches", total=steps) as train_bar:
            train_bar.update(completed=state["epoch_step"], status=f"epoch {epoch + 1}/{self.epochs}")
            for images, masks in loader:
                with controller.atomic():
                    images = images.to(device, non_blocking=True)
                    masks = masks.to(device, non_blocking=True)
                    optimizer.zero_grad(set_to_none=True)
                    with net.autocast():
                        loss = pixel_cross_entropy(net.train_model(images), masks)  # DDP averages the gradients
                    # on_nan=skip pays one host sync a step so that a bad batch never reaches the weights.
                    skipped = self.on_nan == "skip" and not bool(torch.isfinite(loss.detach()))
                    if skipped:
                        log.warning(
                            "training loss is %s at step %d; the step is skipped",
                            float(loss.detach()),
                            state["step"] + 1,
                        )
                    else:
                        net.backward_and_step(loss)
                        losses.append(loss.detach())
                    state["step"] += 1
                    state["epoch_step"] += 1
                    if losses and (state["step"] % self.log_every == 0 or state["epoch_step"] == steps):
                        epochs_bar.update(postfix={"loss": self._log_train(losses, optimizer)})
                        losses.clear()
                    if self.checkpoint_every and state["step"] % self.checkpoint_every == 0:
                        self._check_finite(losses)  # never checkpoint weights a NaN has touched
                        controller.checkpoint_permanences()
                train_bar.advance()

    def _check_finite(self, losses: list[Any]) -> None:
        if losses:
            total = _summed(losses)
            if not bool(total.isfinite()):
                self._diverged(float(total), len(losses))

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

    def _log_train(self, losses: list[Any], optimizer: Any) -> float:
        """Log the mean training loss of the steps since the last log (over every rank's samples); return it."""
        running = _summed(losses)
        all_reduce_sum(running)  # several ranks: each holds its own samples' losses
        count = len(losses)
        mean = float(running.item()) / max(count * get_world_size(), 1)  # the one host sync every log_every steps
        if not math.isfinite(mean):
            self._diverged(mean, count)
        if self.logger is not None:
            self.logger.log(
                {"train/loss": mean, "train/lr": optimizer.param_groups[0]["lr"], "epoch": self.network.state["epoch"]},
                step=self.network.state["step"],
            )
        return mean

    def _end_epoch(self, epoch: int) -> bool:
        """Validate, keep the best weights, draw figures, checkpoint; True to stop early."""
        net, state = self.network, self.network.state
        metrics = evaluate(net.model, net, self.data, "val", self.controller)
        logged = {f"val/{k}": v for k, v in metrics.items()}
        if self.logger is not None:
            self.logger.log({**logged, "epoch": epoch}, step=state["step"])
        value = logged.get(self.monitor)
        if value is None:
            raise ConfigError(
                f"'{self.monitor}' is not a validation metric. Valid: {', '.join(sorted(logged))}",
                key="processes.train.monitor",
            )
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
        if self.figures_every and (epoch + 1) % self.figures_every == 0 and is_main_process():
            path = self.controller.context.figures_dir / f"predictions_epoch_{epoch + 1:03d}.png"
            save_predictions(net, self.data, path, self.num_figure_samples)
            if self.logger is not None:
                self.logger.log_image("predictions_epoch", path, step=state["step"])
        state["epoch"] = epoch + 1
        state["epoch_step"] = 0
        self.controller.checkpoint_permanences()
        # a search's trial: its pruner may stop the run here, after the checkpoint (never after the last epoch)
        trial.report(epoch + 1, value, final=epoch + 1 >= self.epochs)
        return self.patience is not None and state["bad_epochs"] >= self.patience


def _summed(losses: list[Any]) -> Any:
    """The sum of the steps' detached losses, on their device (no host sync)."""
    import torch

    return torch.stack(losses).sum()
