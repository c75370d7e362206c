"""Where a run's ranks come from: ``runner_for(cfg)`` picks how this process runs its config.

* ``distributed`` absent or ``none``: the plain runner.
* This process is already a rank (started by ``torchrun`` or SLURM): a runner
  whose ``run.json`` rank 0 alone writes (:class:`~tipi.distributed.record.RankRecord`).
* ``distributed=ddp`` typed at ``python -m tipi``: tipi's own start. The
  config is composed once, here; resolved, it goes into
  ``<run dir>/.hydra/resolved.yaml``, and torch's own launcher
  (``elastic_launch``, what ``torchrun`` runs) starts ``nproc_per_node``
  workers that each run exactly that file in this run directory.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import sys
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tipi.core.errors import ConfigError, Interrupted, TipiError
from tipi.core.record import RunRecord, RunStatus, atomic_write_text
from tipi.core.runner import PipelineRunner
from tipi.distributed.env import DistEnv, detect
from tipi.distributed.record import RankRecord, first_failure
from tipi.distributed.settings import Settings, cpu_cores

log = logging.getLogger(__name__)
RESOLVED_CONFIG = Path(".hydra") / "resolved.yaml"
WORKER_SPEC = Path(".hydra") / "workers.json"


class DistributedError(TipiError):
    """A rank of a distributed run failed; the message names the rank and its error."""


def runner_for(cfg: DictConfig) -> Any:
    """The object whose ``run()`` runs ``cfg`` here: a plain runner, one rank's runner, or tipi's own start."""
    runner = PipelineRunner(cfg)  # a resumed run's own stored config decides, not the command line's
    node = runner.cfg.get("distributed")
    env = detect()
    if node is None:
        if env.distributed:
            raise ConfigError(
                f"this process is rank {env.rank} of {env.world_size} (started by {env.source}), "
                "but the config has no distributed settings",
                key="distributed",
                hint="Add distributed=ddp, or start one process.",
            )
        return runner
    settings = Settings.from_config(node)
    device = str(runner.cfg.get("device", "auto"))
    settings.check(device=device, runs_here=True)
    if env.distributed or settings.world_size == 1:
        return as_rank(runner, env)
    if settings.nnodes > 1:
        raise ConfigError(
            f"tipi starts ranks on this machine only; {settings.nnodes} nodes need torchrun or SLURM",
            key="distributed.nnodes",
            hint="Run torchrun --nnodes=N ... on each node, or launcher=slurm (docs/distributed.md).",
        )
    settings.warn_oversubscribed(device)
    return ElasticStart(runner, settings)


def as_rank(runner: PipelineRunner, env: DistEnv, fields: dict[str, Any] | None = None) -> PipelineRunner:
    """``runner`` as rank ``env.rank``: rank 0 alone writes run.json; the others never claim the run directory."""
    runner.record_factory = functools.partial(RankRecord, rank=env.rank, world_size=env.world_size, fields=fields)
    # Rank 0 owns the directory and may already have written run.json into it: the others join it.
    runner.joins_run = env.rank != 0
    return runner


@dataclass
class WorkerSpec:
    """What each worker of tipi's own start needs: plain values, in ``<run dir>/.hydra/workers.json``."""

    config: str
    run_dir: str
    overrides: list[str] | None
    resumed_with: list[str] | None
    argv: list[str] = field(default_factory=list)


class ElasticStart:
    """tipi's own start: one composed config, ``nproc_per_node`` workers through ``elastic_launch``."""

    def __init__(self, runner: PipelineRunner, settings: Settings) -> None:
        self.runner = runner
        self.settings = settings

    def run(self) -> float | None:
        """Check the config here, start the workers, wait; rank 0's objective."""
        from tipi.core.rundir import check_not_running

        runner = self.runner
        # no process may run in the directory: this one writes the workers' files there before rank 0 locks it
        check_not_running(runner.run_dir.absolute(), key="resume" if runner.resumed_with is not None else "run_dir")
        runner.build()  # every mistake in the config is reported once, here, before any worker starts
        run_dir = runner.run_dir.absolute()
        resolved = OmegaConf.to_container(runner.cfg, resolve=True)
        assert isinstance(resolved, dict)
        resolved["resume"] = None  # the workers run this file in this directory; nothing to look up again
        path = run_dir / RESOLVED_CONFIG
        atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(resolved)))
        spec = WorkerSpec(
            config=str(path),
            run_dir=str(run_dir),
            overrides=runner.overrides,
            resumed_with=runner.resumed_with,
            argv=list(sys.argv),
        )
        spec_path = run_dir / WORKER_SPEC
        atomic_write_text(spec_path, json.dumps(asdict(spec)))
        if "OMP_NUM_THREADS" not in os.environ:  # the agent hands it to the workers: the cores split between them
            os.environ["OMP_NUM_THREADS"] = str(max(1, cpu_cores() // self.settings.nproc_per_node))
        self._launch(spec_path, run_dir)
        objective = RunRecord(run_dir).data.get("objective")  # rank 0's, as run.json holds it
        return float(objective) if isinstance(objective, (int, float)) else None

    def _launch(self, spec_path: Path, run_dir: Path) -> None:
        """``python -m tipi.distributed.start <spec>`` on each rank, started and watched by torch's elastic agent.

        Workers are fresh interpreters, as torchrun starts them (not forks or spawns of this process).
        """
        from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs, SignalException
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.launcher.api import LaunchConfig, elastic_launch

        # tipi reports a failed rank itself (its error, from run.json); torch's agent would add a traceback
        logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
        with tempfile.TemporaryDirectory(prefix="tipi-elastic-") as logs:
            config = LaunchConfig(
                min_nodes=1,
                max_nodes=1,
                nproc_per_node=self.settings.nproc_per_node,
                run_id=uuid.uuid4().hex,
                rdzv_backend="c10d",
                rdzv_endpoint="127.0.0.1:0",
                max_restarts=0,
                monitor_interval=0.1,
                logs_specs=DefaultLogsSpecs(log_dir=logs),
                # signalled, the ranks stop after a step and checkpoint: give them the time
                shutdown_timeout=int(self.settings.timeout_s),
            )
            try:
                elastic_launch(config, sys.executable)("-m", __name__, str(spec_path))
            except SignalException as exc:
                raise Interrupted(int(exc.sigval)) from None
            except ChildFailedError as exc:
                raise self._failure(run_dir, exc) from None

    @staticmethod
    def _failure(run_dir: Path, exc: Exception) -> BaseException:
        """The error to show for failed workers, from run.json and the ranks' error files."""
        record = RunRecord(run_dir)
        status = record.data.get("status")
        if status in (RunStatus.INTERRUPTED, RunStatus.REQUEUED):
            return Interrupted(signal.SIGTERM)
        error = record.data.get("error") if status == RunStatus.FAILED else None
        if not error:  # rank 0 died without a word (SIGKILL, OOM): say what the workers' exits say
            failure = first_failure(run_dir, None)
            error = f"rank {failure[0]}: {failure[1]}" if failure else str(exc).strip().splitlines()[-1]
            record.finish(RunStatus.FAILED, error=error)
        return DistributedError(
            str(error), key="distributed", hint=f"Each rank's log is <run dir>/rank<N>.log ({run_dir})."
        )


def _worker_logging(rank: int) -> None:
    """The console for rank 0 only (the others: errors); the rank's log file is the permanence's."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    console.setLevel(logging.INFO if rank == 0 else logging.ERROR)
    root.addHandler(console)


def worker_main(spec: dict[str, Any]) -> float | None:
    """One worker of tipi's own start: run the parent's resolved config as this rank."""
    from tipi.core.config import register_resolvers

    os.environ["TIPI_DISTRIBUTED_START"] = "tipi"
    register_resolvers()
    env = detect()
    _worker_logging(env.rank)
    cfg = OmegaConf.load(spec["config"])
    assert isinstance(cfg, DictConfig)
    runner = PipelineRunner(cfg, run_dir=spec["run_dir"], overrides=spec["overrides"])
    runner.resumed_with = spec["resumed_with"]
    as_rank(runner, env, fields={"argv": spec["argv"]})
    try:
        return runner.run()
    except Interrupted as exc:  # checkpointed; rank 0 has recorded it (RankRecord.finish waits for that)
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:
        if os.environ.get("TIPI_TRACEBACK", "") not in ("", "0"):
            raise
        failure = first_failure(Path(spec["run_dir"]), None)
        if failure is None or failure[0] == env.rank:  # not the echo of another rank's failure
            first_line = (str(exc).splitlines() or [""])[0]
            print(f"tipi rank {env.rank}: {type(exc).__name__}: {first_line}", file=sys.stderr)
        raise SystemExit(1) from None


def exit_worker(code: int) -> None:
    """End a worker now that its run is recorded and its process group left: flush, then ``os._exit``.

    A worker's run ends with every file closed and ``destroy_process_group``
    called; what is left is the interpreter's own teardown, in which C++
    objects of torch.distributed (gloo's threads, the store's client) were
    seen, about once in 40 runs on a loaded 2-core machine, to be destroyed
    while a thread of theirs was still joinable: ``terminate called without an
    active exception``, an abort after a run that succeeded. Nothing in a
    worker needs that teardown (the agent watches the exit code only), so the
    worker skips it, as torch's own elastic workers may.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing left to say on it
            stream.flush()
    logging.shutdown()
    os._exit(code)


def _worker_exit_code(spec_path: str) -> int:
    try:
        worker_main(json.loads(Path(spec_path).read_text(encoding="utf-8")))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":  # a worker of tipi's own start (ElasticStart._launch)
    exit_worker(_worker_exit_code(sys.argv[1]))
