"""``python -m tipi``: installs the Hydra seam (:mod:`tipi._hydra`), Hydra composes the config, the runner runs it.

Set ``TIPI_TRACEBACK=1`` (or Hydra's ``HYDRA_FULL_ERROR=1``) to see full tracebacks.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from tipi import _hydra
from tipi.core.config import CONFIG_NAME, CONFIG_PATH, normalize_overrides, register_resolvers
from tipi.core.errors import Interrupted, TipiError
from tipi.core.report import full_traceback_requested, report_error


def run(cfg: DictConfig) -> float | None:
    """One run, or a WandB sweep when the config has a ``sweep`` key; the objective."""
    if cfg.get("sweep") is not None:
        from hydra.core.hydra_config import HydraConfig

        from tipi.wandb_sweeps import run_sweep

        sweep_dir = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path.cwd()
        return run_sweep(cfg, sweep_dir)
    # the plain runner, or (distributed=ddp) this rank's runner or tipi's own start of the ranks
    from tipi.distributed.start import runner_for

    return runner_for(cfg).run()


def task(cfg: DictConfig) -> float | None:
    """Hydra's task function: run one pipeline (or a sweep), return its objective; a single run shows its result."""
    try:
        objective = run(cfg)
    except Interrupted as exc:
        _show_run_end(cfg)
        print(f"tipi: {exc}; state checkpointed, cleanup done", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:
        if full_traceback_requested():
            raise
        report_error(exc)
        if _hydra.is_multirun():
            # Hydra marks this job failed, runs the others, then raises this: one line, not a traceback.
            from hydra.errors import CompactHydraException

            raise CompactHydraException(f"a job failed ({type(exc).__name__}); see the multirun summary") from exc
        if isinstance(exc, TipiError) and not cfg.get("resume"):
            _discard_refused_run_dir()
        _show_run_end(cfg)  # a run refused before it began has no record: nothing is shown
        raise SystemExit(1) from None
    _show_run_end(cfg)
    return objective


def _show_run_end(cfg: DictConfig) -> None:
    """The result block of a single run (a multirun prints its table; a WandB sweep its runs; rank 0 only)."""
    from hydra.core.hydra_config import HydraConfig

    from tipi.distributed.env import detect

    if cfg.get("sweep") is not None or not HydraConfig.initialized() or _hydra.is_multirun() or detect().rank != 0:
        return
    from omegaconf import OmegaConf

    from tipi.runs.ending import show_run_end

    show_run_end(
        Path(HydraConfig.get().runtime.output_dir),
        objective=OmegaConf.select(cfg, "run.objective", default=None),
        monitor=OmegaConf.select(cfg, "processes.train.monitor", default=None),
        mode=str(OmegaConf.select(cfg, "processes.train.monitor_mode", default="max") or "max"),
    )


def _discard_refused_run_dir() -> None:
    """A fresh run refused before it began (no run.json): remove the directory Hydra made for it."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        _hydra.discard_if_untouched(Path(HydraConfig.get().runtime.output_dir))


def main() -> Any:
    """Console entry point."""
    register_resolvers()
    try:
        _hydra.install_for_command_line(sys.argv[1:])  # the seam: tipi's additions to Hydra (tipi._hydra)
        sys.argv[1:] = normalize_overrides(sys.argv[1:])
        _hydra.check_overrides(sys.argv[1:])
    except TipiError as exc:
        report_error(exc)
        raise SystemExit(1) from None
    return hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)(task)()
