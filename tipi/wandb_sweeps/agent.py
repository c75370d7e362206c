"""A WandB sweep on WandB's server: ``wandb.sweep`` creates it (or ``sweep.id`` joins one), ``wandb.agent`` runs it.

Each run the agent hands out becomes one :class:`Trial`: its parameters (the
file ``wandb.agent`` names in ``WANDB_SWEEP_PARAM_PATH``, the same one
``wandb.init`` reads) go through the same checks and Hydra composition as a
local sweep, and its directory is named by the WandB run id, so a run the
server hands out again (after a preemption) resumes where it stopped.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Any

from tipi.core.errors import SweepError
from tipi.core.record import RunStatus
from tipi.wandb_sweeps.overrides import plain
from tipi.wandb_sweeps.spec import SweepSpec
from tipi.wandb_sweeps.trial import Trial, TrialRunner

log = logging.getLogger(__name__)


def agent_parameters() -> dict[str, Any]:
    """The parameters ``wandb.agent`` chose for the run it is starting."""
    import yaml

    path = os.environ.get("WANDB_SWEEP_PARAM_PATH")
    if not path:
        raise SweepError("wandb.agent started a run without parameters (no WANDB_SWEEP_PARAM_PATH)", key="sweep")
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    return {
        str(k): plain(v.get("value") if isinstance(v, dict) and "value" in v else v)
        for k, v in data.items()
        if k not in ("wandb_version", "_wandb")
    }


class WandBAgentSweep:
    """Runs this agent's share of a WandB sweep; ``trials`` lists the runs it ran."""

    def __init__(
        self,
        spec: SweepSpec,
        sweep_dir: Path,
        runner: TrialRunner,
        project: str | None = None,
        entity: str | None = None,
    ) -> None:
        self.spec = spec
        self.sweep_dir = Path(sweep_dir)
        self.runner = runner
        self.project = spec.wandb.get("project") or project
        self.entity = spec.wandb.get("entity") or entity
        self.trials: list[Trial] = []
        self.sweep_id: str | None = spec.id

    def create_or_join(self) -> str:
        """The sweep's id: ``sweep.id``, or a new sweep made from this config."""
        import wandb

        if self.sweep_id is None:
            self.sweep_id = str(wandb.sweep(self.spec.wandb, project=self.project, entity=self.entity))
            log.info("WandB sweep %s created; more agents join with sweep.id=%s", self.sweep_id, self.sweep_id)
        else:
            log.info("joining WandB sweep %s", self.sweep_id)
        self.runner.sweep_id = self.sweep_id
        return self.sweep_id

    def run(self) -> list[Trial]:
        """Run the agent until WandB's sweep, ``count`` or the agent's failure policy ends it."""
        import wandb

        sweep_id = self.create_or_join()
        kwargs: dict[str, Any] = {
            "function": self._run_one,
            "project": self.project,
            "entity": self.entity,
            "count": self.spec.count,
        }
        if "max_consecutive_failed_runs" in inspect.signature(wandb.agent).parameters:
            kwargs["max_consecutive_failed_runs"] = self.spec.max_consecutive_failures
        # The agent writes each run's parameter file under WANDB_DIR (else the working
        # directory): keep it in the sweep's directory. Each run's own files go to its run
        # directory regardless (the logger passes dir=).
        previous = os.environ.get("WANDB_DIR")
        os.environ["WANDB_DIR"] = str(self.sweep_dir)
        try:
            wandb.agent(sweep_id, **kwargs)
        finally:
            if previous is None:
                os.environ.pop("WANDB_DIR", None)
            else:
                os.environ["WANDB_DIR"] = previous
        return self.trials

    def _run_one(self) -> None:
        run_id = os.environ.get("WANDB_RUN_ID")
        trial = Trial(index=len(self.trials), name=run_id or str(len(self.trials)), params=agent_parameters())
        self.trials.append(trial)
        self.runner.run(trial)
        if trial.status != RunStatus.SUCCEEDED:
            # Raised so WandB's agent counts the failure (its stop-after-failures policy);
            # the WandB run itself was already finished as failed by the logger.
            raise SweepError(f"sweep run {trial.name} failed: {trial.error or trial.status}", key="sweep") from None
