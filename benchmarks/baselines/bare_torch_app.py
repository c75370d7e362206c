"""The SLURM baseline: a bare ``@hydra.main`` app whose task imports torch and seeds it, as a tipi job does.

The same primary config as ``bare_hydra_app.py`` (``conf/bare.yaml``, tipi's
defaults list, tipi's config tree on the search path); only the task differs:
it seeds Python, NumPy and torch from ``seed``, which is what every tipi job
does before its pipeline, so a sweep of it against a tipi sweep of
``experiment=bench_noop`` compares the launch and summary machinery, not the
cost of importing torch in each job.

    python benchmarks/baselines/bare_torch_app.py -m hydra/launcher=submitit_slurm seed='range(0,4)'
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

TIPI_CONF = Path(__file__).resolve().parents[2] / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="bare")
def app(cfg: DictConfig) -> None:
    """Seed Python, NumPy and torch from ``seed``; nothing else."""
    import random

    import numpy as np
    import torch

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)


def main() -> None:
    """Put tipi's config tree on the search path, then run the app."""
    sys.argv.insert(1, f"--config-dir={TIPI_CONF}")
    app()


if __name__ == "__main__":
    main()
