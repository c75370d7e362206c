"""The result step: a prediction grid and metric curves under ``figures/``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from tipi.core.check import ConfigCheck
from tipi.core.process import PipelineProcess
from tipi.distributed import is_main_process
from tipi.permanences.data import Data
from tipi.permanences.network import Network
from tipi.processes.common import bar, logger_of, made_at_step, write_json


def save_predictions(network: Network, data: Data, path: Path, num_samples: int = 4) -> Path:
    """Image / ground truth / prediction for the first ``num_samples`` validation images."""
    import torch

    from tipi.vision.figures import save_prediction_grid

    dataset = data.datasets.get("val") or data.datasets["train"]
    n = min(num_samples, len(dataset))  # type: ignore[arg-type]  # map-style datasets have a length
    images, masks = zip(*(dataset[i] for i in range(n)), strict=True)
    batch = torch.stack(images)
    model = network.model
    assert model is not None
    was_training = model.training
    model.eval()
    with torch.no_grad():
        preds = model(batch.to(network.device)).argmax(1).cpu()
    model.train(was_training)
    save_prediction_grid(batch, torch.stack(masks), preds, path)
    return path


class ResultProcess(PipelineProcess):
    """Writes ``figures/predictions_final.png`` and ``figures/curves.png``."""

    requires: ClassVar[dict[str, type]] = {"network": Network, "data": Data}
    metrics = ()  # draws figures, logs no metric

    def __init__(self, controller: Any, force: bool = False, num_samples: int = 4) -> None:
        super().__init__(controller, force)
        self.num_samples = num_samples

    @classmethod
    def check_config(cls, params: Mapping[str, Any], check: ConfigCheck) -> None:
        """``num_samples`` is at least 1 (before anything runs)."""
        value = params.get("num_samples", 4)
        check.require(value >= 1, "num_samples", f"must be at least 1 (images in the grid), got {value}")

    @property
    def outputs(self) -> list[Path]:
        """The figures this step writes."""
        figures = self.controller.context.figures_dir
        return [figures / "predictions_final.png", figures / "curves.png"]

    @property
    def marker(self) -> Path:
        """``figures/result.json``: the training step the figures show."""
        return self.controller.context.figures_dir / "result.json"

    def skip(self) -> bool:
        """Done when both figures exist and show the network's current training step."""
        step = self.controller.get_permanence("network", Network).state["step"]
        return all(p.exists() for p in self.outputs) and made_at_step(self.marker, step)

    def execute(self) -> list[str]:
        """Draw both figures and hand them to the logger (rank 0 alone when there are several ranks)."""
        from tipi.vision.figures import save_metric_curves

        if not is_main_process():
            return [str(p) for p in self.outputs]

        network = self.controller.get_permanence("network", Network)
        data = self.controller.get_permanence("data", Data)
        data.prepare()
        grid, curves = self.outputs
        with bar(self.controller, "result", total=2) as b:
            save_predictions(network, data, grid, self.num_samples)
            b.advance()
            save_metric_curves(network.state["history"], curves)
            b.advance()
        logger = logger_of(self.controller)
        if logger is not None:
            logger.log_image("predictions", grid, step=network.state["step"])
            logger.log_image("curves", curves, step=network.state["step"])
        write_json(self.marker, {"step": network.state["step"]})
        return [str(p) for p in self.outputs]
