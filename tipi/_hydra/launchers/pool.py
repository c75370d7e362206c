"""``launcher=pool``: a multirun on one machine that keeps every GPU (or every core) busy, one job per slot.

Built on submitit's local executor (each job a process, its pickled Hydra job,
its logs and result under ``.submitit/``), which starts every job at once and
stops them with SIGINT, then SIGKILL one second later. The pool adds what it
lacks:

- jobs run ``workers`` at a time, each on a slot it claims in its own process
  (:mod:`tipi._hydra.launchers.slots`): a GPU, or a share of the cores. A few
  more than ``workers`` are started ahead, waiting for a slot with only
  Python and Hydra loaded, so a slot that frees is taken within milliseconds;
- each job's process starts in a session of its own, so the terminal's Ctrl-C
  reaches the launcher only, which asks every job to stop at its next step
  boundary (SIGTERM: tipi checkpoints and marks the run interrupted,
  resumable) and waits for them; a second Ctrl-C kills them;
- a job that ran out of GPU memory is retried once, alone on a GPU, after
  the others (``per_device`` above 1 or ``auto``), and the summary says so;
- ``per_device=auto`` fits as many jobs on a GPU as its free memory holds
  (the peak a finished job of the sweep recorded in run.json; one job per GPU
  until one has).

``launcher.wait=false`` submits every job at once and returns; the jobs queue
for slots by themselves, and ``tipi-runs multirun status`` follows them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus

from tipi._hydra.launchers.slots import PoolPlan, claim, enter_slot, plan_pool
from tipi._hydra.launchers.submitit import TolerantGather
from tipi.atomic import atomic_write_text
from tipi.core.errors import ConfigError
from tipi.core.record import RunRecord
from tipi.runs.submit import detach, launcher_wait, refuse, write_manifest

log = logging.getLogger(__name__)

_POLL_S = 0.05  # how often the launcher looks for ended jobs
_STOP_WAIT_S = 600.0  # after Ctrl-C, how long the jobs get to reach a step boundary and checkpoint
OOM_MARKERS = ("OutOfMemoryError", "out of memory")


def _ran_out_of_memory(result: JobReturn) -> bool:
    if result.status != JobStatus.FAILED:
        return False
    text = repr(result._return_value)
    if result.working_dir:
        record = RunRecord.load(Path(result.working_dir) / "run.json") or {}
        text += str(record.get("error") or "")
    return any(marker in text for marker in OOM_MARKERS)


def _record_peak(run_dir: str | None) -> None:
    """In a GPU job: the most GPU memory it held, in its run.json (``per_device=auto`` plans by it)."""
    torch = sys.modules.get("torch")
    if run_dir is None or torch is None or not torch.cuda.is_initialized():
        return
    peak = max(torch.cuda.max_memory_reserved(i) for i in range(torch.cuda.device_count()))
    record = RunRecord(Path(run_dir))
    if record.path.exists() and peak:
        record.update(peak_memory_bytes=int(peak))


def _peak_bytes(run_dirs: Sequence[Path | None]) -> int | None:
    peaks = [
        int((RunRecord.load(d / "run.json") or {}).get("peak_memory_bytes") or 0) for d in run_dirs if d is not None
    ]
    return max(peaks, default=0) or None


class Pool(TolerantGather):
    """submitit's local executor, ``workers`` jobs at a time, each on a slot of its own (see the module)."""

    plan: PoolPlan | None = None
    exclusive = False  # set while submitting an out-of-memory retry: the job takes a whole GPU
    sweep_path = ""  # the sweep's directory, resolved in the launcher (a job cannot resolve ${now:})

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """In the job's process: claim a slot, enter it, then run the job as every submitit job runs."""
        if self.plan is not None:
            note = {"sweep": self.sweep_path, "job": args[2] if len(args) > 2 else None}
            held = claim(self.plan, exclusive=self.exclusive, note=note)
            slot = enter_slot(self.plan, held)
            log.info("job #%s on slot %s", note["job"], ", ".join(slot["slots"]))
            try:
                result = super().__call__(*args, **kwargs)
                _record_peak(result.working_dir)
                return result
            finally:
                held.release()
        return super().__call__(*args, **kwargs)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """Check, plan the slots, then keep ``workers`` jobs running until every job has ended."""
        assert self.config is not None
        try:
            self.plan = plan_pool(self.config)
        except ConfigError as exc:
            refuse(exc)
        for note in self.plan.notes:
            log.warning("%s", note)
        executor, job_params = self._prepare(job_overrides, initial_job_idx)
        self.sweep_path = str(self.sweep_dir.absolute())
        run_dirs = [self._run_dir(list(o), idx) for idx, o in enumerate(job_overrides, initial_job_idx)]
        log.info(
            "pool: %d job(s), %d at once on %s, %d thread(s) each",
            len(job_overrides),
            self.plan.capacity,
            ", ".join(self.plan.slots),
            self.plan.threads,
        )
        if not launcher_wait(self.config):
            jobs = self._submit(lambda: executor.map_array(self, *zip(*job_params, strict=True)))
            write_manifest(self.config, "local", self.params, False, jobs, job_overrides, run_dirs, initial_job_idx)
            return detach(jobs, job_overrides, run_dirs, self.sweep_dir)
        runner = _Running(self, executor, job_params, run_dirs, initial_job_idx)
        results = runner.run()
        return self._retry_out_of_memory(runner, results)

    def _submit(self, submit: Any) -> Any:
        """Submit as submitit does, each job's controller in a session of its own.

        So the terminal's Ctrl-C (sent to its foreground process group) reaches
        the launcher only, and never submitit's controller, which would answer
        it by killing the job one second later, mid-step. A detached sweep's
        controllers also leave the terminal's output alone (each job logs to
        its own files under ``.submitit/``).
        """
        import subprocess
        import types

        from submitit.local import local

        quiet = {} if launcher_wait(self.config) else {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        popen = functools.partial(subprocess.Popen, start_new_session=True, stdin=subprocess.DEVNULL, **quiet)
        alone = types.SimpleNamespace(Popen=popen)
        local.subprocess = alone  # type: ignore[assignment]  # start_controller's only use of the module is Popen
        try:
            return super()._submit(submit)
        finally:
            local.subprocess = subprocess

    def _retry_out_of_memory(self, runner: _Running, results: list[JobReturn]) -> list[JobReturn]:
        """Jobs that ran out of GPU memory beside others: once more, each alone on a GPU."""
        assert self.plan is not None
        if self.plan.kind != "gpu":
            return results
        again = [i for i, r in enumerate(results) if _ran_out_of_memory(r)]
        if not again:
            return results
        log.warning("%d job(s) ran out of GPU memory; retrying each once, alone on a GPU", len(again))
        self.exclusive = True
        try:
            retried = runner.run(again, retry=True)
        finally:
            self.exclusive = False
        for i in again:
            results[i] = retried[i]
            run_dir = runner.run_dirs[i]
            if run_dir is not None and (run_dir / "run.json").exists():
                record = RunRecord(run_dir)
                record.update(retried_alone="ran out of GPU memory beside other jobs; retried alone on a GPU")
        return results


class _Running:
    """The jobs of one launch: submitted ahead of free slots, gathered as they end."""

    def __init__(
        self, pool: Pool, executor: Any, job_params: list[tuple[Any, ...]], run_dirs: list[Path | None], first: int
    ) -> None:
        self.pool, self.executor, self.job_params, self.run_dirs, self.first = (
            pool,
            executor,
            job_params,
            run_dirs,
            first,
        )
        self.results: list[JobReturn | None] = [None] * len(job_params)
        self.submit_s: dict[int, float] = {}  # the launcher's time to submit each job (pickle, start its process)

    def run(self, which: Sequence[int] | None = None, retry: bool = False) -> list[JobReturn]:
        """Run jobs ``which`` (all by default); the result of every job."""
        queue = deque(range(len(self.job_params)) if which is None else which)
        running: dict[int, Any] = {}
        try:
            while queue or running:
                self._top_up(queue, running, retry)
                for i, job in list(running.items()):
                    if job.done():
                        del running[i]
                        overrides = list(self.job_params[i][0])
                        self.results[i] = self.pool._gather(job, overrides, self.first + i)
                        self._replan()
                time.sleep(_POLL_S)
        except KeyboardInterrupt:
            self._stop(running)
            raise
        finally:
            self._write_log()
        return list(self.results)  # type: ignore[arg-type]  # every job run has its result; a retry keeps the others'

    def _replan(self) -> None:
        """``per_device=auto``: once a job has recorded its peak memory, fit as many jobs per GPU as it allows."""
        plan = self.pool.plan
        if plan is None or not plan.auto or plan.gpus == []:
            return
        peak = _peak_bytes(self.run_dirs)
        if peak is None:
            return
        assert self.pool.config is not None
        self.pool.plan = plan_pool(self.pool.config, peak_bytes=peak, gpus=plan.gpus)
        self.pool.plan.auto = False  # planned by a measured peak: settled
        log.info(
            "per_device=auto: a job peaks at %.2f GiB; slots now %s", peak / 2**30, ", ".join(self.pool.plan.slots)
        )

    def _top_up(self, queue: deque[int], running: dict[int, Any], retry: bool) -> None:
        plan = self.pool.plan
        assert plan is not None
        ahead = 1 if retry else plan.capacity * 2  # started ahead: waiting for a slot, imports done
        submitted = []
        while queue and len(running) < ahead:
            i = queue.popleft()
            t0 = time.perf_counter()
            job = self.pool._submit(lambda i=i: self.executor.submit(self.pool, *self.job_params[i]))
            # a local job's result is on this disk when its process ends: none then is none (submitit waits 15 s)
            job._results_timeout_s = 1.0
            self.submit_s[i] = time.perf_counter() - t0
            running[i] = job
            submitted.append((i, job))
        if submitted and not retry:
            write_manifest(
                self.pool.config,
                "local",
                self.pool.params,
                True,
                [job for _, job in submitted],
                [self.job_params[i][0] for i, _ in submitted],
                [self.run_dirs[i] for i, _ in submitted],
                self.first + submitted[0][0],
            )

    def _write_log(self) -> None:
        """``<sweep>/pool.json``: the slots and, per job, the launcher's submit time (benchmarks read it)."""
        plan = self.pool.plan
        if plan is None:
            return
        jobs = [{"num": self.first + i, "submit_s": round(t, 4)} for i, t in sorted(self.submit_s.items())]
        log_file = Path(self.pool.sweep_path) / "pool.json"
        with contextlib.suppress(OSError):  # a log: the jobs' own records stand without it
            atomic_write_text(log_file, json.dumps({"plan": json.loads(describe(plan)), "jobs": jobs}, indent=1))

    def _stop(self, running: dict[int, Any]) -> None:
        """Ctrl-C: every running job stops at its next step boundary (checkpointed, resumable); wait for them."""
        print(
            f"\nstopping {len(running)} job(s) at their next step boundary; each can be resumed "
            "(Ctrl-C again to kill them)",
            flush=True,
        )
        for job in running.values():
            job._process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_WAIT_S
        try:
            while any(not job.done() for job in running.values()) and time.monotonic() < deadline:
                time.sleep(_POLL_S)
        except KeyboardInterrupt:
            for job in running.values():
                job._process.send_signal(signal.SIGKILL)
        for i, job in running.items():
            self.pool._gather(job, list(self.job_params[i][0]), self.first + i)


def describe(plan: PoolPlan) -> str:
    """The plan as one JSON line (for logs and tests)."""
    return json.dumps({"kind": plan.kind, "slots": plan.slots, "threads": plan.threads, "capacity": plan.capacity})
