"""Hydra callbacks: one run directory for every rank, a writable output directory, the summary of every multirun.

``SharedRunDir`` makes every rank of a torchrun/SLURM start use rank 0's run
directory and clock; ``OutputDirCheck`` stops a run whose directory cannot be
written or belongs to another run; ``MultirunSummary`` (configured in ``hydra.callbacks`` by ``conf/config.yaml``)
writes ``summary.csv`` into the sweep directory and prints the same rows as a
Rich table when a multirun ends: one row per job, read back from each job's
``run.json``, so it is the same for the basic, submitit-local and SLURM
launchers and survives jobs that ran in other processes or were requeued.
The rows, the CSV and the table live in :mod:`tipi.runs.summary`, which
``tipi-runs multirun status`` uses as well.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from tipi._hydra.resolvers import fix_now
from tipi.atomic import free_space
from tipi.core.record import RunRecord, RunStatus
from tipi.core.report import report_error
from tipi.distributed.env import detect
from tipi.distributed.rendezvous import rendezvous_store
from tipi.runs.summary import collect_jobs, first_line, print_summary, write_summary

log = logging.getLogger(__name__)


class MultirunSummary(Callback):
    """Writes ``summary.csv`` and prints a table when a multirun ends.

    When a job failed, Hydra's basic sweeper raises before ``on_multirun_end``;
    the summary is then written at interpreter exit instead, so it is never
    lost. A sweeper that tolerates failed jobs (Optuna) reaches
    ``on_multirun_end``; if a job failed there, the multirun exits with 1.
    """

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.mode = "max"
        self.done = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Remember the sweep directory; make sure the summary is written even if the sweep raises."""
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        self.mode = str(OmegaConf.select(config, "run.objective_mode", default="max"))
        atexit.register(self._finish)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Give a multirun job that failed before its run started (a config error) a failed run record.

        Runs in the job's process, whichever launcher runs it. A single run is
        left alone: there a config error leaves no run directory content.
        """
        if job_return.status != JobStatus.FAILED or config.hydra.mode != RunMode.MULTIRUN:
            return
        record = RunRecord(Path(str(config.hydra.runtime.output_dir)))
        if record.path.exists():
            return  # the runner recorded the failure itself
        try:
            job_return.return_value  # noqa: B018 - a failed job's property raises the job's error
        except Exception as exc:  # noqa: BLE001 - whatever the job raised is what the record says
            error: BaseException = exc.__cause__ or exc
        else:
            return  # the CLI wraps a job's error in one short line for Hydra
        record.data.update(
            status=RunStatus.FAILED,
            error=f"{type(error).__name__}: {first_line(str(error))}",
            overrides=list(config.hydra.overrides.task),
        )
        record.save()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Write and print the summary; exit 1 if a job did not succeed.

        A detached sweep (``launcher.wait=false``) has just been submitted: its
        summary says what the scheduler says now, and nothing has failed yet.
        """
        if not OmegaConf.select(config, "launcher.wait", default=True) and self.sweep_dir is not None:
            self.done = True
            from tipi.runs.multirun import counts_line, refresh

            rows, _ = refresh(self.sweep_dir)
            log.info("detached sweep: %s", counts_line(rows))
            return
        rows = self._finish()
        failed = [row for row in rows if row["status"] not in (RunStatus.SUCCEEDED, RunStatus.PRUNED)]
        if failed:
            log.error("%d of %d jobs did not succeed", len(failed), len(rows))
            # SystemExit passes Hydra's callback guard (which only warns on Exception)
            raise SystemExit(1)

    def _finish(self) -> list[dict[str, Any]]:
        if self.done or self.sweep_dir is None or not self.sweep_dir.is_dir():
            return []
        self.done = True
        rows = collect_jobs(self.sweep_dir)
        if not rows:  # stopped before any job ran (a refused launcher setting): nothing to summarise
            return rows
        path = write_summary(self.sweep_dir, rows)
        print_summary(rows, self.sweep_dir, path, self.mode)
        return rows


class OutputDirCheck(Callback):
    """Stops a run whose output directory cannot be written, before Hydra tries to create it.

    Hydra would fail in ``mkdir`` with a traceback; this says which directory
    and which key, as every other tipi error does.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")
        # a fresh run: the directory must not hold another run; a resume: no process may be running in it
        # (both before Hydra writes .hydra/ there; a DDP rank but 0 joins rank 0's: SharedRunDir)
        if detect().rank != 0:
            return
        from tipi.core.rundir import RunDirTaken, check_free, check_not_running

        run_dir = Path(str(config.hydra.run.dir)).absolute()
        try:
            if config.get("resume"):
                check_not_running(run_dir, key="resume")
            else:
                overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
                check_free(run_dir, [str(o) for o in overrides or []])
        except RunDirTaken as exc:  # RunDirBusy (a process runs there) is one
            report_error(exc)
            raise SystemExit(1) from None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        import tempfile

        try:
            path = Path(str(OmegaConf.select(config, key)))
        except Exception:  # noqa: BLE001 - a dir that needs Hydra's runtime to resolve: Hydra checks it
            return
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=path) as probe:  # room for what Hydra writes first (.hydra/, the log)
                probe.write(bytes(_ROOM_FOR_HYDRA))
                probe.flush()
                os.fsync(probe.fileno())
        except OSError as exc:
            from tipi.core.errors import ConfigError

            full = exc.errno == errno.ENOSPC
            with contextlib.suppress(OSError):  # the empty directory this check (or the claim) made
                path.rmdir()
            report_error(
                ConfigError(
                    f"the output directory '{path}' cannot be written: {exc.strerror or exc}"
                    + (f" ({free_space(path)} free on its file system)" if full else ""),
                    key=key,
                    hint=(
                        f"Free some space there, or choose another directory with {key}=<path>."
                        if full
                        else f"Run from a writable directory, or choose one with {key}=<path>."
                    ),
                )
            )
            raise SystemExit(1) from None


_ROOM_FOR_HYDRA = 64 * 1024  # .hydra/'s three files and the first log lines, with room to spare


class SharedRunDir(Callback):
    """Hydra callback: every rank of a torchrun/SLURM start uses rank 0's run directory and clock."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Agree on the run directory before Hydra resolves and creates it."""
        if config.get("distributed") is None:  # runner_for says what is wrong with ranks but no settings
            return
        env = detect()
        if not env.distributed or env.source == "tipi":
            return
        store = rendezvous_store(env)
        attempt = os.environ.get("TORCHELASTIC_RUN_ID") or os.environ.get("SLURM_JOB_ID") or "run"
        prefix = f"tipi/{attempt}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        if env.rank == 0:
            moment = datetime.now()
            fix_now(moment)
            run_dir = str(OmegaConf.select(config, "hydra.run.dir"))
            store.set(f"{prefix}/now", moment.isoformat())
            store.set(f"{prefix}/run_dir", run_dir)
        else:
            fix_now(datetime.fromisoformat(store.get(f"{prefix}/now").decode()))
            run_dir = store.get(f"{prefix}/run_dir").decode()
        with read_write(config), open_dict(config):
            config.hydra.run.dir = run_dir
            if env.rank != 0:
                config.hydra.output_subdir = None  # rank 0 alone writes .hydra/
            handler = OmegaConf.select(config, "hydra.job_logging.handlers.file", default=None)
            if isinstance(handler, DictConfig) and "filename" in handler:
                handler.filename = os.path.join(run_dir, f"rank{env.rank}.log")
