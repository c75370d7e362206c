"""Every job of a multirun passes tipi's gate before the first job starts.

Hydra's sweeper composes every job's config before the launch, so a key that
does not exist is refused up front; a *value* that is wrong
(``processes.train.epochs=1,abc``, ``seed=``) is found only by tipi's gate,
which each job runs when it starts: job 0 would train, and the mistake would
surface minutes later in one row of the summary. :func:`check_jobs` runs the
gate (the builder's checks, no permanence built, nothing written) on every
job's composed config first, and refuses the whole multirun with one message
that names each bad job, its overrides and the key.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from tipi._hydra.outputs import discard_if_untouched
from tipi.core.errors import ConfigError, TipiError
from tipi.runs.submit import refuse

log = logging.getLogger(__name__)
SHOWN = 5  # bad jobs named in the message; the rest are counted


def _job_config(loader: Any, master: DictConfig, overrides: list[str]) -> DictConfig:
    """The job's composed config: the one the sweeper's check kept (left for the launch), else composed now."""
    kept = getattr(loader, "kept", {}).get(tuple(overrides))
    if kept is not None:
        return kept
    compose = getattr(loader, "loader", loader)  # CheckedConfigs wraps Hydra's loader
    return compose.load_sweep_config(master, overrides)


def _gate(cfg: DictConfig, idx: int) -> None:
    """tipi's gate on one job's config, as the job would run it (its Hydra config set, as ``run_job`` sets it)."""
    from hydra.core.hydra_config import HydraConfig

    from tipi.core.builder import PipelineBuilder

    job = cfg.copy()
    with open_dict(job):
        job.hydra.job.num = idx
        job.hydra.job.id = f"check_{idx}"
        job.hydra.runtime.output_dir = "."  # set by run_job when the job runs; the gate writes nothing
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(job)
    try:
        with open_dict(job):
            del job["hydra"]  # Hydra's own settings: ${hydra:...} reads them from HydraConfig, as in the job
        builder = PipelineBuilder(job)
        builder.check()
        builder.check_permanences()
    finally:
        HydraConfig.instance().cfg = previous


def check_jobs(loader: Any, master: DictConfig | None, job_overrides: Sequence[Sequence[str]], first_idx: int) -> None:
    """A ``ConfigError`` naming every job whose config tipi's gate refuses; nothing when all pass."""
    if master is None:
        return
    refused: list[tuple[int, list[str], TipiError]] = []
    for idx, overrides in enumerate(job_overrides, start=first_idx):
        try:
            _gate(_job_config(loader, master, list(overrides)), idx)
        except TipiError as exc:
            refused.append((idx, list(overrides), exc))
        except Exception as exc:  # noqa: BLE001 - not a config mistake the gate knows: the job itself reports it
            log.debug("job #%d could not be checked before the launch: %s", idx, exc)
    if not refused:
        return
    lines = [
        f"job #{idx} ({' '.join(overrides) or 'no overrides'}): "
        + (f"{exc.key}: {exc.message}" if exc.key else exc.message)
        for idx, overrides, exc in refused[:SHOWN]
    ]
    if len(refused) > SHOWN:
        lines.append(f"... and {len(refused) - SHOWN} more")
    first = refused[0][2]
    raise ConfigError(
        f"{len(refused)} of {len(job_overrides)} jobs would be refused; no job was started:\n  " + "\n  ".join(lines),
        key=first.key,
        hint=first.hint,
    )


def refuse_bad_jobs(
    loader: Any, master: DictConfig | None, job_overrides: Sequence[Sequence[str]], first_idx: int
) -> None:
    """:func:`check_jobs`, and on a refusal: the multirun's directory removed (only ``multirun.yaml`` there), exit 2."""
    try:
        check_jobs(loader, master, job_overrides, first_idx)
    except ConfigError as exc:
        if master is not None:
            discard_if_untouched(Path(str(master.hydra.sweep.dir)))
        refuse(exc)
