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
the behaviour is here.

:class:`ComposeOnce` is the other change, for the basic launcher
(``launcher=local``): Hydra's basic sweeper composes every job's config to
check the batch before the first job runs, and the basic launcher then
composes it again to run it. Composing tipi's config tree is most of a
trivial job's cost, so the launcher takes the config the check composed.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as hsl
from omegaconf import DictConfig, OmegaConf, open_dict

from tipi.core.errors import ConfigError, TipiError
from tipi.core.record import RunRecord, RunStatus
from tipi.runs.submit import check_detachable, detach, launcher_wait, refuse, write_manifest

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

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """Run one job in the worker; its config is composed there, so tipi.params must be in place there too."""
        from tipi.params import install

        install()
        return super().__call__(*args, **kwargs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Submit one job per override list; wait for all; a lost job is a failed ``JobReturn``."""
        import submitit
        from hydra.core.singleton import Singleton
        from hydra.core.utils import filter_overrides
        from omegaconf import OmegaConf

        assert self.config is not None and len(job_overrides) > 0
        if not launcher_wait(self.config):
            check_detachable(self.config)
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
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, sweep_dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            sweep_dir.chmod(int(str(self.config.hydra.sweep.mode), 8))
        job_params: list[tuple[Any, ...]] = []
        state = Singleton.get_state()  # a deep copy; the same for every job of the batch, so taken once
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", state))
        checked = self.hydra_context.config_loader if self.hydra_context is not None else None
        if isinstance(checked, CheckedConfigs):  # each job gets Hydra's own loader, without the checked configs
            checked.kept.clear()
            self.hydra_context.config_loader = checked.loader
        try:
            jobs = executor.map_array(self, *zip(*job_params, strict=True))
        finally:
            if isinstance(checked, CheckedConfigs):
                self.hydra_context.config_loader = checked
        run_dirs = [self._run_dir(list(overrides), idx) for idx, overrides in enumerate(job_overrides, initial_job_idx)]
        wait = launcher_wait(self.config)
        write_manifest(self.config, self._EXECUTOR, self.params, wait, jobs, job_overrides, run_dirs, initial_job_idx)
        if not wait:
            return detach(jobs, job_overrides, run_dirs, sweep_dir)
        return [
            self._gather(job, list(overrides), idx)
            for idx, (job, overrides) in enumerate(zip(jobs, job_overrides, strict=True), start=initial_job_idx)
        ]

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


class CheckedConfigs:
    """Hydra's config loader, composing each sweep job once, and most of them from an earlier job's config.

    Outside a launch, ``load_sweep_config`` composes as Hydra does and keeps the
    result (the sweeper's check of a batch); during a launch it hands over the
    kept config for the same overrides, once, and composes only what was not
    kept. What a launch leaves (a job the launch never reached) is dropped when
    it ends. Anything else goes to Hydra's loader unchanged.

    Jobs that choose the same config groups and differ only in values (``seed=1,2,3``,
    ``optimizer.lr=...``) share everything Hydra builds before it applies value
    overrides. The second such job has Hydra compose that shared part once (a
    *base*); every later one is a copy of the base with its own value overrides
    applied by Hydra's own function, and its override bookkeeping
    (``hydra.overrides.task``, ``hydra.job.override_dirname``) set as Hydra sets it.
    Before a base is used it must reproduce the first job's config exactly, as
    Hydra composed it; if it does not (another Hydra version), every job is
    composed in full. Overrides of ``hydra.*`` keys and of packages are always
    composed in full.
    """

    KEEP = 256  # configs of one batch kept at most (about 160 KiB each); further jobs are composed at launch

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.kept: dict[tuple[str, ...], DictConfig] = {}
        self.launching = False
        self.derive = True  # False once a base failed its check, or Hydra's internals are not as expected
        self._repo: Any = None
        self._first: dict[tuple[str, ...], list[str]] = {}  # group choices -> the first job that made them
        self._bases: dict[tuple[str, ...], DictConfig] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """The job's config: the one the check composed (once, at launch), else composed now."""
        key = tuple(sweep_overrides)
        if self.launching and key in self.kept:
            return self.kept.pop(key)
        cfg = self._compose(master_config, list(sweep_overrides))
        if not self.launching and len(self.kept) < self.KEEP:
            self.kept[key] = cfg  # the check only composes; it neither keeps nor changes the config
        return cfg

    def _compose(self, master: DictConfig, overrides: list[str]) -> DictConfig:
        split = self._split(master, overrides) if self.derive else None
        if split is None:
            return self.loader.load_sweep_config(master, overrides)
        groups, values, parsed = split
        base = self._bases.get(groups)
        if base is None:
            first = self._first.setdefault(groups, overrides)
            if first == overrides:  # the first job with these choices: Hydra composes it
                return self.loader.load_sweep_config(master, overrides)
            base = self._make_base(master, groups, first)
            if base is None:
                return self.loader.load_sweep_config(master, overrides)
        return self._apply(base, master, parsed, values)

    def _split(self, master: DictConfig, overrides: list[str]) -> tuple[tuple[str, ...], list[Any], list[Any]] | None:
        """(group overrides, value overrides, all parsed) by Hydra's rule; None where the job must be composed."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        if self._repo is None:  # the search path of this sweep (hydra.searchpath included), as Hydra builds it
            try:
                _, self._repo = self.loader._parse_overrides_and_create_caching_repo(
                    master.hydra.job.config_name, list(master.hydra.overrides.hydra)
                )
            except Exception:  # noqa: BLE001 - not the Hydra 1.3 internals this relies on: compose every job
                self.derive = False
                return None
        try:
            parsed = OverridesParser.create().parse_overrides(overrides=overrides)
        except Exception:  # noqa: BLE001 - Hydra's own composition reports the bad override
            return None
        groups: list[str] = []
        values: list[Any] = []
        for override in parsed:
            if override.is_hydra_override() or override.package is not None or override.is_sweep_override():
                return None
            # Hydra's rule (defaults_list.Overrides): a dict value or a key that is no group is a value override
            if isinstance(override.value(), dict) or not self._repo.group_exists(override.key_or_group):
                values.append(override)
            else:
                groups.append(str(override.input_line))
        return tuple(groups), values, parsed

    def _make_base(self, master: DictConfig, groups: tuple[str, ...], first: list[str]) -> DictConfig | None:
        """Hydra's composition with these group choices only, if it reproduces the first job's config."""
        base = self.loader.load_sweep_config(master, list(groups))
        first_cfg = self.kept.get(tuple(first))
        if first_cfg is None:
            first_cfg = self.loader.load_sweep_config(master, first)
        first_split = self._split(master, first)
        assert first_split is not None
        again = self._apply(base, master, first_split[2], first_split[1])
        if OmegaConf.to_container(again, resolve=False) != OmegaConf.to_container(first_cfg, resolve=False):
            log.debug("a job's config derived from its groups' base differs from Hydra's; composing every job")
            self.derive = False
            return None
        self._bases[groups] = base
        return base

    @staticmethod
    def _apply(base: DictConfig, master: DictConfig, parsed: list[Any], values: list[Any]) -> DictConfig:
        """A copy of ``base`` with the value overrides and the override bookkeeping of ``parsed`` (as Hydra does)."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
        from hydra.errors import ConfigCompositionException
        from omegaconf.errors import OmegaConfBaseException

        cfg = copy.deepcopy(base)
        try:
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        except OmegaConfBaseException as exc:  # as Hydra's load_configuration reports it
            raise ConfigCompositionException().with_traceback(exc.__traceback__) from exc
        cfg.hydra.overrides.task = [override.input_line for override in parsed]
        dirname = cfg.hydra.job.config.override_dirname
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=parsed, exclude_keys=list(dirname.exclude_keys), item_sep=dirname.item_sep, kv_sep=dirname.kv_sep
        )
        OmegaConf.copy_cache(from_config=master, to_config=cfg)
        return cfg


class ComposeOnce(BasicLauncher):
    """Hydra's basic launcher, running each job with the config the sweeper composed to check it."""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Give the sweeper and this launcher one :class:`CheckedConfigs` (the sweeper holds the same context)."""
        if not isinstance(hydra_context.config_loader, CheckedConfigs):
            hydra_context.config_loader = CheckedConfigs(hydra_context.config_loader)  # type: ignore[assignment]  # a wrapper with the loader's interface
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Hydra's basic launch, taking the checked configs; nothing kept outlives it."""
        if not launcher_wait(self.config):
            refuse(
                ConfigError(
                    "launcher=local runs the jobs in this process, one after another: it cannot return before they end",
                    key="launcher.wait",
                    hint="Submit and detach with launcher=slurm (or launcher=submitit_local) launcher.wait=false; "
                    "or run this sweep under nohup / tmux.",
                )
            )
        checked = self.hydra_context.config_loader if self.hydra_context is not None else None
        if not isinstance(checked, CheckedConfigs):
            return super().launch(job_overrides, initial_job_idx)
        checked.launching = True
        try:
            return super().launch(job_overrides, initial_job_idx)
        finally:
            checked.launching = False
            checked.kept.clear()
