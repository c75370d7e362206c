"""The Hydra baseline: a bare ``@hydra.main`` app that composes tipi's defaults list and does nothing.

Its primary config (``conf/bare.yaml`` next to this file) mirrors tipi's
``conf/config.yaml``: the same defaults list and top-level keys, without tipi's
resolvers and callbacks. The groups themselves (data/, model/, ...) are read
from tipi's config tree in this checkout (put on the search path with
``--config-dir``, so ``--help`` lists them as tipi's does): both apps compose
the same YAML. ``tests/unit/test_benchmarks_smoke.py`` checks that the two
defaults lists agree.

    python benchmarks/baselines/bare_hydra_app.py --help
    python benchmarks/baselines/bare_hydra_app.py experiment=seg --cfg job
    python benchmarks/baselines/bare_hydra_app.py -m seed='range(0,50)'
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

TIPI_CONF = Path(__file__).resolve().parents[2] / "conf"


@hydra.main(version_base="1.3", config_path="conf", config_name="bare")
def app(cfg: DictConfig) -> None:
    """Do nothing: what is measured is Hydra."""
    return None


def main() -> None:
    """Put tipi's config tree on the search path, then run the app."""
    sys.argv.insert(1, f"--config-dir={TIPI_CONF}")
    app()


if __name__ == "__main__":
    main()
