"""The data-load step: build the datasets once and report their sizes."""

from __future__ import annotations

import logging
from typing import ClassVar

from tipi.core.process import PipelineProcess
from tipi.permanences.data import Data

log = logging.getLogger(__name__)


class DataLoadProcess(PipelineProcess):
    """Prepares the ``data`` permanence (idempotent, so a resumed run simply repeats it)."""

    requires: ClassVar[dict[str, type]] = {"data": Data}
    metrics = ()  # logs none

    def execute(self) -> dict[str, int]:
        """Build the train / val / test datasets; return their sizes."""
        sizes = self.controller.get_permanence("data", Data).prepare()
        log.info("data: %s", ", ".join(f"{k}={v}" for k, v in sizes.items()))
        return sizes
