"""4. Memory: resident memory after each job of an in-process multirun of a small training pipeline.

Hydra's basic launcher runs every job in one process, so whatever a job's
permanences fail to release accumulates. The job clock callback reads
``VmRSS`` at each job's end, after the executor's cleanup. A full run repeats
the multirun with the C heap trimmed at each job's end (``malloc_trim``), which
separates memory still held (a leak) from freed memory the allocator keeps.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from benchmarks.multirun import clock_args
from benchmarks.report import Row, Section
from benchmarks.startup import tipi_cmd
from benchmarks.stats import check, run_timed

GROWTH_GOAL = 0.05
REFERENCE_JOB = 5  # memory settles after the first few jobs (imports, allocator pools)


def slope_kib_per_job(values: list[float]) -> float:
    """Least-squares slope of ``values`` against their index."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return num / den


ARGS = ("debug=fast", "model=unet_small", "progress=none")


def rss_series(work: Path, jobs: int, trim: bool) -> tuple[list[float], float]:
    """RSS (MiB) at each job's end of one multirun of ``jobs`` jobs, and its wall time."""
    name = "trim" if trim else "raw"
    out = work / f"{name}.json"
    extra = ["+hydra.callbacks.bench_clock.trim=true"] if trim else []
    timed = check(run_timed(tipi_cmd("-m", *ARGS, f"seed=range(0,{jobs})", f"hydra.sweep.dir={work / name}",
                                     *clock_args(out), *extra), work, timeout=1800), f"tipi multirun (memory, {name})")
    rss = json.loads(out.read_text())["rss_kib"]
    if len(rss) != jobs or any(x is None for x in rss):
        raise RuntimeError(f"expected {jobs} RSS readings, got {rss}")
    return [x / 1024 for x in rss], timed.seconds


def rows_for(rss: list[float], label: str, goal: bool) -> list[Row]:
    """Growth from job 5 to the last job (judged when ``goal``), trend and range."""
    jobs = len(rss)
    ref, last = rss[REFERENCE_JOB - 1], rss[-1]
    growth = (last - ref) / ref
    return [
        Row(f"{label}: RSS after job {REFERENCE_JOB} → after job {jobs}", f"{ref:.0f} → {last:.0f} MiB", "",
            f"{growth:+.1%}", f"within ±{GROWTH_GOAL:.0%}" if goal else "",
            (abs(growth) <= GROWTH_GOAL) if goal else None, growth),
        Row(f"{label}: trend over jobs {REFERENCE_JOB}–{jobs}; after job 1; min–max",
            f"{slope_kib_per_job(rss[REFERENCE_JOB - 1:]) * 1024:+.0f} KiB/job; {rss[0]:.0f} MiB; "
            f"{min(rss):.0f}–{max(rss):.0f} MiB", "", "", "", None),
    ]


def run(quick: bool) -> Section:
    """All of section 4."""
    jobs = 10 if quick else 50
    section = Section(f"4. Memory over {jobs} in-process jobs (`{' '.join(ARGS)}`)")
    with tempfile.TemporaryDirectory(prefix="tipi-bench-memory-") as tmp:
        work = Path(tmp)
        raw, raw_s = rss_series(work, jobs, trim=False)
        section.rows += rows_for(raw, "as is", goal=True)
        section.raw = {"rss_mib": raw, "wall_s": raw_s}
        if not quick:
            trimmed, trim_s = rss_series(work, jobs, trim=True)
            section.rows += rows_for(trimmed, "C heap trimmed after each job", goal=False)
            section.raw.update(rss_trimmed_mib=trimmed, trimmed_wall_s=trim_s)
    section.notes.append(f"`python -m tipi -m {' '.join(ARGS)} seed=range(0,{jobs})` ({raw_s:.0f} s); RSS read "
                         "from /proc/self/status at each job's end by benchmarks/probes/job_clock.py. No baseline: "
                         "the goal is no growth.")
    if not quick:
        section.notes.append("'C heap trimmed': the same multirun with glibc's malloc_trim(0) at each job's end. "
                             "Flat there but growing as is means no leak: the allocator keeps freed memory for "
                             "reuse (tipi could trim after each run; see the note in docs/performance.md).")
    return section
