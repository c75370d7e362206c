"""The hyperparameters permanence: the resolved run config, for processes and loggers."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from tipi.core.permanence import Permanence


class Hyperparameters(Permanence):
    """Holds the resolved config of the run (and the sweep's parameters, when in a sweep)."""

    def __init__(self, sweep_params: dict[str, Any] | None = None) -> None:
        self.sweep_params: dict[str, Any] = dict(sweep_params or {})
        self.config: dict[str, Any] = {}

    def initialize(self) -> None:
        """Resolve the run's config into plain containers (``hydra`` excluded)."""
        cfg = self.controller.context.cfg
        if cfg is not None:
            container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
            assert isinstance(container, dict)
            container.pop("hydra", None)
            self.config = {str(k): v for k, v in container.items()}

    def get(self, dotted_key: str, default: Any = None) -> Any:
        """A value by dotted key (``optimizer.lr``-style paths into the resolved config)."""
        node: Any = self.config
        for part in dotted_key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def get_state(self) -> dict[str, Any]:
        """The resolved config, plus ``sweep`` parameters when present."""
        return {"config": self.config, "sweep": self.sweep_params}

    def cleanup(self) -> None:
        """Nothing to release."""
