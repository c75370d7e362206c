"""3. Multirun: per-job overhead of ``python -m tipi -m`` over trivial jobs against a bare Hydra app's multirun.

A trivial tipi job is ``experiment=bench_noop`` (``benchmarks/conf``): one
process that does nothing, no data, no network, no progress display, so what
is measured is the engine (compose, check, build, record, lifecycle). The bare
app composes the same config and runs an empty task. Both use Hydra's basic
launcher and carry the same :class:`~benchmarks.probes.job_clock.JobClock`
callback, which timestamps each job in-process:

    per-job overhead = (time before the first job starts) / N   # the sweeper composes every job once to check it
                     + median(time between consecutive job starts, first job excluded)

The first job is excluded from the cycle: it pays one-time imports (torch, for tipi's seeding and device).

tipi's ``launcher=local`` runs each job with the config Hydra's sweeper
composed to check it (``tipi._hydra.launchers.in_process.InProcess``); a third variant runs
tipi with Hydra's own basic launcher (``hydra/launcher=basic``), which
composes every job a second time, to show what that saves.
"""

from __future__ import annotations

import itertools
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import BENCH_DIR
from benchmarks.report import Row, Section
from benchmarks.startup import bare_cmd, bare_env, tipi_cmd
from benchmarks.stats import check, child_env, rounds, run_timed, summarize

STRETCH_MS = 50.0
CLOCK = "benchmarks.probes.job_clock.JobClock"
BARE_CLOCK = "job_clock.JobClock"  # the bare app has only benchmarks/probes on its path (startup.bare_env)
SEARCH_PATH = f"hydra.searchpath=[file://{BENCH_DIR / 'conf'}]"
HYDRA_LAUNCHER = "hydra/launcher=basic"


def clock_args(out: Path, target: str = CLOCK) -> list[str]:
    """Overrides that add the job clock callback, writing to ``out``."""
    return [f"+hydra.callbacks.bench_clock._target_={target}", f"+hydra.callbacks.bench_clock.out={out}"]


def analyse(clock: dict[str, Any], jobs: int) -> dict[str, float]:
    """Per-job figures (seconds) from one multirun's job clock."""
    starts, ends = clock["job_start"], clock["job_end"]
    if len(starts) != jobs or len(ends) != jobs:
        raise RuntimeError(f"expected {jobs} jobs, the clock saw {len(starts)} starts and {len(ends)} ends")
    before_first = starts[0] - clock["multirun_start"]
    cycles = [b - a for a, b in itertools.pairwise(starts[1:])]
    bodies = [e - s for s, e in zip(starts[1:], ends[1:], strict=True)]
    cycle = statistics.median(cycles)
    return {
        "per_job": before_first / jobs + cycle,
        "validate_per_job": before_first / jobs,
        "cycle": cycle,
        "job_body": statistics.median(bodies),
        "first_job_body": ends[0] - starts[0],
        "total": clock.get("multirun_end", ends[-1]) - clock["multirun_start"],
    }


def run(quick: bool) -> Section:
    """All of section 3."""
    jobs, repeats = (20, 1) if quick else (50, 3)
    section = Section(f"3. Multirun: per-job overhead over {jobs} trivial jobs (basic launcher)")
    sweep = f"seed=range(0,{jobs})"
    counter = iter(range(10_000))

    with tempfile.TemporaryDirectory(prefix="tipi-bench-multirun-") as tmp:
        work = Path(tmp)

        def one(cmd_of: Any, name: str, env: dict[str, str], clock: str, *extra: str) -> dict[str, float]:
            i = next(counter)
            out = work / f"{name}-{i}.json"
            args = ["-m", "experiment=bench_noop", SEARCH_PATH, sweep, f"hydra.sweep.dir={work / f'{name}-{i}'}",
                    *clock_args(out, clock), *extra]
            timed = check(run_timed(cmd_of(*args), work, env=env, timeout=900), f"{name} multirun")
            result = analyse(json.loads(out.read_text()), jobs)
            result["wall"] = timed.seconds
            return result

        tipi_runs, bare_runs, twice_runs = rounds([
            lambda: one(tipi_cmd, "tipi", child_env(), CLOCK),
            lambda: one(bare_cmd, "bare", bare_env(), BARE_CLOCK),
            lambda: one(tipi_cmd, "tipi-hydra-launcher", child_env(), CLOCK, HYDRA_LAUNCHER),
        ], repeats, warmup=0)

    def stat(runs: list[dict[str, float]], key: str, unit: str = "ms", scale: float = 1e3) -> Any:
        return summarize([r[key] for r in runs], unit, scale)

    t, b = stat(tipi_runs, "per_job"), stat(bare_runs, "per_job")
    section.rows.append(Row("per-job overhead", t, b, f"{t.median - b.median:+.0f} ms ({t.median / b.median:.2f}×)",
                            "≤ bare Hydra's", t.median <= b.median, t.median / b.median))
    section.rows.append(Row("per-job overhead, stretch", t, "", "", f"≤ {STRETCH_MS:.0f} ms",
                            t.median <= STRETCH_MS, t.median))
    section.rows.append(Row("…sweeper's up-front compose of each job (validation)", stat(tipi_runs, "validate_per_job"),
                            stat(bare_runs, "validate_per_job"), "", "", None))
    section.rows.append(Row("…job cycle (tipi: run_job + task; bare: launcher compose + run_job + task)",
                            stat(tipi_runs, "cycle"),
                            stat(bare_runs, "cycle"), "", "", None))
    section.rows.append(Row("…the task function itself (tipi: the runner)", stat(tipi_runs, "job_body"),
                            stat(bare_runs, "job_body"), "", "", None))
    section.rows.append(Row("first job's task (one-time imports)", stat(tipi_runs, "first_job_body", "s", 1.0),
                            stat(bare_runs, "first_job_body", "s", 1.0), "", "", None))
    section.rows.append(Row(f"whole multirun of {jobs} jobs, wall", stat(tipi_runs, "wall", "s", 1.0),
                            stat(bare_runs, "wall", "s", 1.0), "", "", None))
    twice = stat(twice_runs, "per_job")
    section.rows.append(Row("per-job overhead, tipi with Hydra's own basic launcher (composes each job twice)",
                            twice, b, f"{twice.median - b.median:+.0f} ms ({twice.median / b.median:.2f}×)", "", None))
    section.raw = {"tipi": tipi_runs, "bare": bare_runs, "tipi_hydra_launcher": twice_runs, "jobs": jobs}
    section.notes += [
        f"{repeats} multirun(s) a side of {jobs} jobs, `experiment=bench_noop {sweep}`, "
        "timed in-process by a Hydra callback (benchmarks/probes/job_clock.py).",
        "Hydra's basic sweeper composes every job to check it before the first runs; Hydra's basic launcher "
        "then composes it again, tipi's (`launcher=local`, tipi/_hydra/launchers/in_process.py) runs the job with "
        "the config the check composed.",
    ]
    return section
