"""A process that does nothing: a multirun of it measures tipi's engine, not training."""

from __future__ import annotations

from tipi.core.process import PipelineProcess


class NoopProcess(PipelineProcess):
    """Returns at once (``experiment=bench_noop`` from ``benchmarks/conf``)."""

    def execute(self) -> None:
        """Nothing."""
        return None
