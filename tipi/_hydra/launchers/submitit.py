"""Submitit launchers whose multirun survives a job that dies.

hydra-submitit-launcher 1.2 gathers results with ``[j.results()[0] for j in jobs]``:
the first job that ends without a result (SIGKILL, out of memory, a node
failure, ``scancel``: submitit's ``UncompletedJobError``) aborts the launch
while the other jobs still run, and the sweep summary then sees them
unfinished. These subclasses change only that: they wait for every job, turn
a lost one into a failed ``JobReturn`` (so Hydra's sweeper still fails the
multirun) and close its ``run.json`` as failed, so the summary has one true
row per job.

Hydra only instantiates launchers defined under the ``hydra_plugins``
namespace, so the concrete classes that ``launcher=slurm`` and
``launcher=submitit_local`` select live in ``hydra_plugins/tipi_launcher``;
the behaviour is here. Each job's config comes from :class:`CheckedConfigs`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as hsl
from omegaconf import DictConfig, OmegaConf, open_dict

from tipi._hydra.launchers.checked_configs import CheckedConfigs
from tipi._hydra.launchers.precheck import refuse_bad_jobs
from tipi._hydra.patches import install, installed_parts
from tipi.core.errors import TipiError
from tipi.core.record import RunRecord, RunStatus
from tipi.runs.submit import check_detachable, detach, launcher_wait, write_manifest

log = logging.getLogger(__name__)


class JobLost(TipiError):
    """A multirun job ended without returning a result (killed, out of memory, node failure)."""


def close_lost_record(run_dir: Path, reason: str, overrides: list[str]) -> None:
    """Record in ``run_dir/run.json`` that the job was lost, unless its run ended on its own.

    A job killed with SIGKILL cannot write its own end, and a requeued job that
    never started again cannot either; without this their records would claim
    a future that will not come. A job that died before its run began gets a
    record, so the sweep summary still has its row.
    """
    record = RunRecord(run_dir)
    if record.path.exists() and record.data.get("status") not in (RunStatus.RUNNING, RunStatus.REQUEUED):
        return
    ended = datetime.now(UTC).isoformat(timespec="seconds")  # when the loss was noticed
    record.data.setdefault("overrides", overrides)
    # duration unknown: the process died some time before the launcher noticed
    record.data.update(status=RunStatus.FAILED, ended=ended, error=reason, objective=None, duration_s=None)
    if record.data.get("attempts"):
        record.data["attempts"][-1].update(end=ended, status=RunStatus.FAILED, reason=reason)
    record.save()


def _wait(job: Any, poll_s: float = 10.0) -> None:
    """Wait for ``job`` to end, asking the cluster about it at least every ``poll_s`` seconds.

    submitit notices a job that died without a result only through ``sacct``,
    which it calls less and less often (up to once a minute) the longer a
    sweep runs; one call covers every job of the sweep, so asking every few
    seconds while waiting costs the scheduler little and reports a killed job
    promptly.
    """
    last = time.monotonic()
    while not job.done():
        if time.monotonic() - last >= poll_s:
            last = time.monotonic()
            if job.done(force_check=True):
                return
        time.sleep(1.0)


class TolerantGather(hsl.BaseSubmititLauncher):
    """``launch`` as in hydra-submitit-launcher 1.2.0, except how results are gathered.

    Also: the sweeper's check of the batch composes job configs through
    :class:`CheckedConfigs` (most derived from one composed base, so a 50-job
    ``launcher.wait=false`` submit returns in seconds, not in 50 compositions);
    the jobs still compose their own config in their own process.
    """

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Give the sweeper a :class:`CheckedConfigs` for its check (it holds the same context)."""
        if not isinstance(hydra_context.config_loader, CheckedConfigs):
            hydra_context.config_loader = CheckedConfigs(hydra_context.config_loader)  # type: ignore[assignment]  # a wrapper with the loader's interface
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.seam_parts = sorted(installed_parts())  # pickled with the launcher: the worker installs the same

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """Run one job in the worker; its config is composed there, so the seam must be in place there too."""
        install(*getattr(self, "seam_parts", ()))
        return super().__call__(*args, **kwargs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit one job per override list; wait for all; a lost job is a failed ``JobReturn``."""
        executor, job_params = self._prepare(job_overrides, initial_job_idx)
        jobs = self._submit(lambda: executor.map_array(self, *zip(*job_params, strict=True)))
        run_dirs = [self._run_dir(list(overrides), idx) for idx, overrides in enumerate(job_overrides, initial_job_idx)]
        wait = launcher_wait(self.config)
        write_manifest(self.config, self._EXECUTOR, self.params, wait, jobs, job_overrides, run_dirs, initial_job_idx)
        if not wait:
            return detach(jobs, job_overrides, run_dirs, self.sweep_dir)
        return [
            self._gather(job, list(overrides), idx)
            for idx, (job, overrides) in enumerate(zip(jobs, job_overrides, strict=True), start=initial_job_idx)
        ]

    @property
    def sweep_dir(self) -> Path:
        """The multirun's directory (``hydra.sweep.dir``)."""
        assert self.config is not None
        return Path(str(self.config.hydra.sweep.dir))

    def _prepare(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> tuple[Any, list[tuple[Any, ...]]]:
        """Check every job (tipi's gate), make the sweep directory; the executor and each job's arguments."""
        import submitit
        from hydra.core.singleton import Singleton
        from hydra.core.utils import filter_overrides

        assert self.config is not None and len(job_overrides) > 0
        if not launcher_wait(self.config):
            check_detachable(self.config)
        loader = self.hydra_context.config_loader if self.hydra_context else None
        refuse_bad_jobs(loader, self.config, job_overrides, initial_job_idx)  # tipi's gate on every job first
        init_keys = {"max_num_timeout", "submitit_folder"}
        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR,
            folder=self.params["submitit_folder"],
            **{f"{self._EXECUTOR}_max_num_timeout": v for k, v in self.params.items() if k == "max_num_timeout"},
        )
        base_keys = set(OmegaConf.structured(hsl.BaseQueueConf).keys())
        executor.update_parameters(
            **{
                k if k in base_keys else f"{self._EXECUTOR}_{k}": v
                for k, v in self.params.items()
                if k not in init_keys
            }
        )
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, self.sweep_dir)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            self.sweep_dir.chmod(int(str(self.config.hydra.sweep.mode), 8))
        job_params: list[tuple[Any, ...]] = []
        state = Singleton.get_state()  # a deep copy; the same for every job of the batch, so taken once
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", state))
        return executor, job_params

    def _submit(self, submit: Any) -> Any:
        """``submit()`` with each job given Hydra's own loader (the checked configs stay here, unpickled)."""
        checked = self.hydra_context.config_loader if self.hydra_context is not None else None
        if isinstance(checked, CheckedConfigs):
            checked.kept.clear()
            self.hydra_context.config_loader = checked.loader
        try:
            return submit()
        finally:
            if isinstance(checked, CheckedConfigs):
                self.hydra_context.config_loader = checked

    def _run_dir(self, overrides: list[str], idx: int) -> Path | None:
        """The job's run directory, without composing its config where the sweep's subdir is tipi's or resubmit's."""
        assert self.config is not None
        subdir = OmegaConf.to_container(self.config.hydra.sweep, resolve=False).get("subdir")  # type: ignore[union-attr]  # hydra.sweep is a mapping
        sweep_dir = Path(os.path.abspath(str(self.config.hydra.sweep.dir)))
        if subdir == "${hydra.job.num}":
            return sweep_dir / str(idx)
        resume = next((o.split("=", 1)[1].strip("'\"") for o in overrides if o.startswith("resume=")), None)
        if subdir == "${resume}" and resume:
            return Path(os.path.abspath(resume))
        run_dir = self._job_dir(overrides, idx)
        return Path(os.path.abspath(run_dir)) if run_dir is not None else None

    def _gather(self, job: Any, overrides: list[str], idx: int) -> JobReturn:
        """The job's ``JobReturn``; if it ended without one, a failed ``JobReturn`` saying why."""
        from submitit.core.utils import FailedJobError, UncompletedJobError

        try:
            _wait(job)
            return job.results()[0]
        except (UncompletedJobError, FailedJobError) as exc:
            kind = "failed outside the task" if isinstance(exc, FailedJobError) else "ended without a result"
            reason = f"JobLost: job {job.job_id} {kind} (state {job.state}); see {job.paths.stderr}"
            run_dir = self._job_dir(overrides, idx)
            if run_dir is not None:
                close_lost_record(run_dir, reason, overrides)
            log.error("#%d %s", idx, reason)
            return JobReturn(
                overrides=overrides,
                working_dir=str(run_dir) if run_dir else None,
                status=JobStatus.FAILED,
                _return_value=JobLost(reason.removeprefix("JobLost: ")),
            )

    def _job_dir(self, overrides: list[str], idx: int) -> Path | None:
        """The job's output directory, composed exactly as the job composed it."""
        assert self.hydra_context is not None and self.config is not None
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            with open_dict(cfg.hydra.job):
                cfg.hydra.job.num = idx
            return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
        except Exception as exc:  # noqa: BLE001 - the summary still marks the job; only run.json stays open
            log.warning("cannot find the directory of job #%d: %s", idx, exc)
            return None
