"""The test step: loss, Dice, per-class and mean IoU on the held-out split."""

from __future__ import annotations

from typing import ClassVar

from tipi.processes.validate import EvaluationProcess, eval_metric_names


class TestProcess(EvaluationProcess):
    """Evaluates the best weights on the test split; writes ``test_metrics.json``."""

    __test__ = False  # not a pytest test class
    split: ClassVar[str] = "test"
    metrics = eval_metric_names("test")
