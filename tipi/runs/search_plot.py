"""``<sweep>/search.png``: Optuna's optimization history above its intermediate values (matplotlib, no plotly)."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_plots(study: Any, path: Path) -> Path | None:
    """Draw the study's history and the intermediate values of its trials, one above the other; the PNG's path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as optuna_plots
        from PIL import Image

        images = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            for plot in (optuna_plots.plot_optimization_history, optuna_plots.plot_intermediate_values):
                axes = plot(study)
                figure = axes.get_figure(root=True)
                assert figure is not None
                figure.set_size_inches(8, 4.5)
                buffer = io.BytesIO()
                figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
                plt.close(figure)
                images.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        width = max(i.width for i in images)
        sheet = Image.new("RGB", (width, sum(i.height for i in images)), "white")
        top = 0
        for image in images:
            sheet.paste(image, (0, top))
            top += image.height
        path.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(path)
        return path
    except Exception as exc:  # noqa: BLE001 - a figure is a convenience: the study and the runs stand without it
        log.warning("search: could not draw %s: %s", path, exc)
        return None
