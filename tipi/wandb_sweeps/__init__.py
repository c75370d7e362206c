"""WandB sweeps mapped onto the engine: ``python -m tipi +experiment=seg +sweep=seg_lr``.

A sweep config (``conf/sweep/*.yaml``) is WandB's sweep format whose
parameter names are Hydra override keys. Each run of the sweep gets its
parameters as overrides on top of the command line, a freshly composed
config, its own controller, output subdirectory and WandB run; its metric
goes back to the sweep. Online, ``wandb.sweep`` / ``wandb.agent`` drive it;
offline (no server at all), WandB's own engine (the ``sweeps`` package)
proposes the runs here, with the same semantics.

The entry point (``tipi.cli``) calls :func:`run_sweep` when the composed config has a ``sweep`` key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tipi.core.errors import Interrupted, SweepError
from tipi.core.record import RunRecord, RunStatus
from tipi.wandb_sweeps import compose
from tipi.wandb_sweeps.overrides import check_against
from tipi.wandb_sweeps.spec import SweepSpec, import_sweeps
from tipi.wandb_sweeps.summary import print_summary, write_summary
from tipi.wandb_sweeps.trial import Trial, TrialRunner

__all__ = ["SweepSpec", "Trial", "choose_backend", "run_sweep"]

log = logging.getLogger(__name__)


def _logger_is_wandb(cfg: DictConfig) -> bool:
    from tipi.permanences.wandb import wandb_settings

    return wandb_settings(cfg) is not None


def choose_backend(spec: SweepSpec, cfg: DictConfig) -> str:
    """``wandb`` (WandB's server runs the sweep) or ``local`` (WandB's engine runs here).

    ``auto`` takes the server only when the run would log online anyway:
    ``logger=wandb``, no ``WANDB_MODE=offline``/``disabled``, and an API key.
    """
    from tipi.permanences.wandb import has_credentials, requested_mode, wandb_settings

    settings = wandb_settings(cfg)
    logger_is_wandb = settings is not None
    mode = requested_mode(settings.get("mode")) if settings is not None else None
    if spec.backend == "local":
        if spec.id:
            raise SweepError(
                "joining a WandB sweep needs WandB's server; sweep.backend=local runs one here", key="sweep.id"
            )
        return "local"
    if spec.backend == "wandb":
        if not logger_is_wandb:
            raise SweepError(
                "a sweep on WandB's server needs logger=wandb: the server reads each run's metric from its WandB run",
                key="logger",
                hint="Add logger=wandb, or run the sweep here with sweep.backend=local.",
            )
        if mode in ("offline", "disabled"):
            # WandB cannot check a login while offline; the agent still talks to the server.
            log.warning("WandB is %s: the sweep's runs reach the server only after `wandb sync`", mode)
        elif not has_credentials():
            raise SweepError(
                "a sweep on WandB's server needs a WandB API key",
                key="sweep.backend",
                hint="Run `wandb login`, or run the sweep here with sweep.backend=local.",
            )
        return "wandb"
    if logger_is_wandb and mode not in ("offline", "disabled") and has_credentials():
        return "wandb"
    return "local"


def _best(trials: list[Trial], goal: str) -> Trial | None:
    scored = [t for t in trials if t.status == RunStatus.SUCCEEDED and t.objective is not None]
    if not scored:
        return None
    pick = max if goal == "max" else min
    return pick(scored, key=lambda t: t.objective)  # type: ignore[arg-type, return-value]  # scored trials all have an objective (filtered above)


def run_sweep(cfg: DictConfig, run_dir: Path) -> float | None:
    """Run the sweep configured at ``cfg.sweep`` in ``run_dir``; return the best objective.

    Each run lives in ``<run dir>/<run>/``; the sweep writes ``sweep_summary.csv``
    and its own ``run.json`` (best objective, status) into ``<run dir>``.
    """
    spec = SweepSpec.from_config(
        cfg.get("sweep"),
        objective=OmegaConf.select(cfg, "run.objective"),
        objective_mode=OmegaConf.select(cfg, "run.objective_mode"),
    )
    check_against(spec.parameter_names, cfg)  # a misspelt parameter stops the sweep before its first run
    backend = choose_backend(spec, cfg)
    sweep_dir = Path(run_dir).absolute()
    base = compose.command_line_overrides(sweep_dir)
    engine = _engine(spec, cfg, backend, TrialRunner(spec, sweep_dir, base), sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord(sweep_dir)
    record.start(name=spec.name or OmegaConf.select(cfg, "run.name"), seed=cfg.get("seed"), overrides=base)
    record.update(
        sweep={
            "name": spec.name,
            "method": spec.method,
            "backend": backend,
            "metric": spec.wandb.get("metric"),
            "id": spec.id,
        }
    )
    status: str = RunStatus.FAILED
    error: str | None = None
    try:
        engine.run()
        status = RunStatus.SUCCEEDED
    except Interrupted as exc:
        status, error = (RunStatus.REQUEUED if exc.requeue else RunStatus.INTERRUPTED), str(exc)
        raise
    except BaseException as exc:
        error = (str(exc).splitlines() or [type(exc).__name__])[0]
        status = RunStatus.INTERRUPTED if isinstance(exc, (KeyboardInterrupt, SystemExit)) else RunStatus.FAILED
        raise
    finally:
        status, error, best = _finish(engine, spec, sweep_dir, record, status, error)
    if status == RunStatus.FAILED:
        raise SweepError(error or "the sweep failed", key="sweep")
    return best.objective if best else None


def _engine(spec: SweepSpec, cfg: DictConfig, backend: str, trial_runner: TrialRunner, sweep_dir: Path) -> Any:
    """The sweep engine for ``backend``: WandB's agent (its server proposes) or WandB's engine run here."""
    from tipi.wandb_sweeps.agent import WandBAgentSweep
    from tipi.wandb_sweeps.local import LocalSweep

    log.info(
        "sweep %s: %s search, %s",
        spec.name or "",
        spec.method,
        "on WandB's server" if backend == "wandb" else "WandB's engine, here",
    )
    if backend == "wandb":
        from tipi.permanences.wandb import wandb_settings

        settings = wandb_settings(cfg) or {}
        return WandBAgentSweep(
            spec, sweep_dir, trial_runner, project=settings.get("project"), entity=settings.get("entity")
        )
    import_sweeps()  # WandB's engine must be there before the first run starts
    if spec.method != "grid" and spec.run_cap is None and spec.count is None:
        raise SweepError(
            f"a {spec.method} sweep never runs out of proposals: give it a run count",
            key="sweep.run_cap",
            hint="e.g. sweep.run_cap=8",
        )
    return LocalSweep(spec, sweep_dir, trial_runner, seed=cfg.get("seed"))


def _finish(
    engine: Any, spec: SweepSpec, sweep_dir: Path, record: RunRecord, status: str, error: str | None
) -> tuple[str, str | None, Trial | None]:
    """Summarise the runs (table and CSV) and close the sweep's own ``run.json``."""
    trials: list[Trial] = engine.trials
    best = _best(trials, spec.goal)
    if trials:
        path = write_summary(sweep_dir, trials, spec.parameter_names)
        print_summary(trials, spec.parameter_names, title=f"sweep summary: {path}", metric=spec.metric_name, best=best)
    if status == RunStatus.SUCCEEDED and trials and not any(t.status == RunStatus.SUCCEEDED for t in trials):
        status, error = RunStatus.FAILED, f"none of the {len(trials)} sweep runs succeeded"
    if getattr(engine, "sweep_id", None):
        record.data["sweep"]["id"] = engine.sweep_id
    record.data["runs"] = [t.name for t in trials]
    record.finish(status, objective=best.objective if best else None, error=error)
    return status, error, best
