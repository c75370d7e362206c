"""What a submitit launcher does at submission for the runs browser: the manifest, and detaching.

:class:`tipi.launchers.TolerantGather` calls these right after it submitted a
batch: :func:`write_manifest` always (so ``tipi-runs multirun status`` knows the
SLURM job ids of jobs that have not started yet), :func:`detach` when
``launcher.wait=false``. Hydra and OmegaConf are imported here, so the list
path of the runs browser never imports this module.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

from tipi.core.errors import ConfigError

log = logging.getLogger(__name__)


def launcher_wait(config: DictConfig | None) -> bool:
    """``launcher.wait``: False submits the jobs and returns (a sweep that outlives its terminal)."""
    return bool(OmegaConf.select(config, "launcher.wait", default=True)) if config is not None else True


def check_detachable(config: DictConfig) -> None:
    """``launcher.wait=false`` needs a sweeper that does not wait for results (Hydra's basic sweeper)."""
    sweeper = str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
    # tipi's search: its workers take trials from the study on their own, with no one waiting
    if not sweeper.endswith(("BasicSweeper", "SearchSweeper", "OptunaSweeper")):
        refuse(
            ConfigError(
                f"the sweeper {sweeper} needs each job's result before it picks the next ones",
                key="launcher.wait",
                hint="Keep launcher.wait=true with this sweeper; tipi's search (search=...) detaches.",
            )
        )


def refuse(error: ConfigError) -> NoReturn:
    """Report ``error`` as the CLI reports every error (``Error <key>: ...``, the hint); exit 2, nothing ran."""
    from tipi.core.report import report_error

    report_error(error)
    raise SystemExit(2)


def write_manifest(
    config: DictConfig,
    executor: str,
    params: dict[str, Any],
    wait: bool,
    jobs: Sequence[Any],
    job_overrides: Sequence[Sequence[str]],
    run_dirs: Sequence[Path | None],
    first_idx: int,
) -> None:
    """Record the submitted jobs in ``<sweep dir>/manifest.json`` (:mod:`tipi.runs.manifest`)."""
    from tipi.runs import manifest

    sources = OmegaConf.select(config, "hydra.runtime.config_sources", default=[]) or []
    command = {
        "cwd": os.getcwd(),
        "config_dirs": [str(s.path) for s in sources if s.provider == "command-line" and s.schema == "file"],
        "hydra_overrides": list(OmegaConf.select(config, "hydra.overrides.hydra", default=[]) or []),
        "task_overrides": list(OmegaConf.select(config, "hydra.overrides.task", default=[]) or []),
        "launcher_choice": OmegaConf.select(config, "hydra.runtime.choices.launcher", default=None),
    }
    triples = zip(jobs, job_overrides, run_dirs, strict=True)
    submitted = [
        {"num": idx, "overrides": list(overrides), "run_dir": str(run_dir), "job_id": str(job.job_id)}
        for idx, (job, overrides, run_dir) in enumerate(triples, first_idx)
        if run_dir is not None
    ]
    try:
        manifest.record_submission(
            Path(os.path.abspath(str(config.hydra.sweep.dir))),
            executor=executor,
            launcher=params,
            wait=wait,
            submitted=submitted,
            command=command,
        )
    except OSError as exc:  # the jobs run anyway; only the runs browser loses track of pending ones
        log.warning("cannot write the sweep's manifest.json: %s", exc)


def detach(
    jobs: Sequence[Any], job_overrides: Sequence[Sequence[str]], run_dirs: Sequence[Path | None], sweep_dir: Path
) -> list[JobReturn]:
    """Say what was submitted and return at once: one completed ``JobReturn`` without a value per job."""
    from hydra.core.utils import filter_overrides

    sweep_dir = Path(os.path.abspath(sweep_dir))
    lines = [f"submitted {len(jobs)} job(s); not waiting for them (launcher.wait=false)", f"sweep: {sweep_dir}"]
    lines += [
        f"  {job.job_id}  {' '.join(filter_overrides(list(o)))}" for job, o in zip(jobs, job_overrides, strict=True)
    ]
    lines.append(f"follow with: tipi-runs multirun status {sweep_dir}")
    print("\n".join(lines), flush=True)
    return [
        JobReturn(overrides=list(o), working_dir=str(d) if d else None, status=JobStatus.COMPLETED, _return_value=None)
        for o, d in zip(job_overrides, run_dirs, strict=True)
    ]
