"""Hydra callbacks: the summary of every multirun, whatever the launcher or sweeper.

``SweepSummary`` (configured in ``hydra.callbacks`` by ``conf/config.yaml``)
writes ``summary.csv`` into the sweep directory and prints the same rows as a
Rich table when a multirun ends: one row per job, read back from each job's
``run.json``, so it is the same for the basic, submitit-local and SLURM
launchers and survives jobs that ran in other processes or were requeued.
"""

from __future__ import annotations

import atexit
import csv
import io
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from tipi.core.record import RunRecord, atomic_write_text

log = logging.getLogger(__name__)

COLUMNS = ("job", "overrides", "status", "objective", "duration_s", "attempts", "error", "run_dir")
SUMMARY_FILE = "summary.csv"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _job_num(hydra_yaml: Path) -> int | None:
    """``hydra.job.num`` from a job's saved Hydra config (plain YAML: libyaml's parser, 20x OmegaConf's)."""
    try:
        saved = yaml.load(hydra_yaml.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
        num = saved["hydra"]["job"]["num"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    return num if isinstance(num, int) else None


def _job_dirs(sweep_dir: Path) -> list[tuple[int, Path]]:
    """``(job number, directory)`` of every job under ``sweep_dir``, by number.

    A job directory holds Hydra's ``.hydra/`` or a ``run.json`` (a job lost
    before Hydra set it up gets one from the launcher); runs nested inside a
    job (a WandB sweep's runs) belong to that job.
    """
    found = {p.parent for p in sweep_dir.rglob(".hydra")} | {p.parent for p in sweep_dir.rglob("run.json")}
    jobs = []
    for job_dir in found:
        if job_dir == sweep_dir or ".submitit" in job_dir.relative_to(sweep_dir).parts:
            continue
        if any(parent in found for parent in job_dir.parents if parent != sweep_dir):
            continue
        num = _job_num(job_dir / ".hydra" / "hydra.yaml")
        if num is None and job_dir.name.isdigit():
            num = int(job_dir.name)
        jobs.append((int(num) if num is not None else -1, job_dir))
    return sorted(jobs, key=lambda item: (item[0], str(item[1])))


def _duration(record: dict[str, Any]) -> float | None:
    """Seconds the run took, summed over its attempts when it was requeued."""
    attempts = record.get("attempts") or []
    if len(attempts) <= 1:
        return record.get("duration_s")
    total = 0.0
    for attempt in attempts:
        try:
            total += (datetime.fromisoformat(attempt["end"]) - datetime.fromisoformat(attempt["start"])).total_seconds()
        except (KeyError, TypeError, ValueError):
            return record.get("duration_s")
    return round(total, 3)


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job directory under ``sweep_dir``, read from its ``run.json``."""
    rows = []
    for num, job_dir in _job_dirs(sweep_dir):
        record = _read_json(job_dir / "run.json") or {}
        overrides = record.get("overrides")
        if overrides is None and (job_dir / ".hydra" / "overrides.yaml").is_file():
            overrides = OmegaConf.to_container(OmegaConf.load(job_dir / ".hydra" / "overrides.yaml"))
        status = record.get("status", "not started")
        error = _first_line(record.get("error") or "")
        if status in ("running", "requeued"):
            # the multirun is over, so nobody will finish this record: the job was
            # killed (SIGKILL, OOM) or lost, or a launcher gave up waiting for it
            status, error = "failed", error or f"run.json still says '{status}': the job was killed or lost"
        rows.append({
            "job": num,
            "overrides": " ".join(overrides or []),
            "status": status,
            "objective": record.get("objective"),
            "duration_s": _duration(record),
            "attempts": len(record.get("attempts") or []),
            "error": error,
            "run_dir": str(job_dir),
        })
    return rows


def write_summary(sweep_dir: Path, rows: list[dict[str, Any]], filename: str = SUMMARY_FILE) -> Path:
    """Write ``rows`` as CSV into ``sweep_dir`` atomically; return the path."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path = sweep_dir / filename
    atomic_write_text(path, buf.getvalue())
    return path


def best_row(rows: list[dict[str, Any]], mode: str = "max") -> dict[str, Any] | None:
    """The succeeded row with the best objective (``mode`` "max" or "min"), if any has one."""
    scored = [row for row in rows if row["status"] == "succeeded" and isinstance(row["objective"], (int, float))]
    if not scored:
        return None
    pick = min if mode == "min" else max
    return pick(scored, key=lambda row: row["objective"])


def print_summary(rows: list[dict[str, Any]], sweep_dir: Path, summary_path: Path, mode: str = "max") -> None:
    """The same rows as a Rich table on stderr, kept narrow enough for a terminal.

    Overrides that all jobs share go to the caption, run directories are shown
    relative to the sweep directory, and the attempts and error columns appear
    only when some job was requeued or failed.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    split = [row["overrides"].split() for row in rows]
    common = [o for o in split[0] if all(o in s for s in split[1:])] if len(rows) > 1 else []
    caption = f"sweep: {sweep_dir}" + (f"\ncommon overrides: {' '.join(common)}" if common else "")
    table = Table(title=f"multirun summary: {summary_path}", caption=escape(caption))
    columns = ["job", "overrides", "status", "objective", "duration_s"]
    columns += ["attempts"] * any(row["attempts"] > 1 for row in rows)
    columns += ["error"] * any(row["error"] for row in rows)
    columns += ["run_dir"]
    for col in columns:
        table.add_column(col, overflow="fold")
    for row, overrides in zip(rows, split):
        objective, duration = row["objective"], row["duration_s"]
        cells = {
            "job": str(row["job"]),
            "overrides": escape(" ".join(o for o in overrides if o not in common)),
            "status": f"[{'green' if row['status'] == 'succeeded' else 'red'}]{row['status']}[/]",
            "objective": f"{objective:.4g}" if isinstance(objective, float) else str(objective or ""),
            "duration_s": f"{duration:.1f}" if isinstance(duration, (int, float)) else "",
            "attempts": str(row["attempts"]),
            "error": escape(row["error"]),
            "run_dir": escape(_relative(row["run_dir"], sweep_dir)),
        }
        table.add_row(*(cells[col] for col in columns))
    console = Console(stderr=True)
    console.print(table)
    best = best_row(rows, mode)
    if best is not None and len(rows) > 1:
        console.print(f"best ({mode}): job {best['job']}, objective {best['objective']:.4g}: "
                      f"{escape(_relative(best['run_dir'], Path.cwd()))}")


def _relative(path: str, base: Path) -> str:
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return path


class SweepSummary(Callback):
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
        error = job_return._return_value  # noqa: SLF001 - JobReturn has no public accessor that does not raise
        error = error.__cause__ or error  # the CLI wraps a job's error in one short line for Hydra
        record.data.update(status="failed", error=f"{type(error).__name__}: {_first_line(str(error))}",
                           overrides=list(config.hydra.overrides.task))
        record.save()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Write and print the summary; exit 1 if a job did not succeed."""
        rows = self._finish()
        failed = [row for row in rows if row["status"] != "succeeded"]
        if failed:
            log.error("%d of %d jobs did not succeed", len(failed), len(rows))
            # SystemExit passes Hydra's callback guard (which only warns on Exception)
            raise SystemExit(1)

    def _finish(self) -> list[dict[str, Any]]:
        if self.done or self.sweep_dir is None or not self.sweep_dir.is_dir():
            return []
        self.done = True
        rows = collect_jobs(self.sweep_dir)
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
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as exc:
            from tipi.cli import report_error
            from tipi.core.errors import ConfigError

            report_error(ConfigError(
                f"the output directory '{path}' cannot be written: {exc.strerror or exc}", key=key,
                hint=f"Run from a writable directory, or choose one with {key}=<path>."))
            raise SystemExit(1) from None
