"""8. Pool: a 4-job CPU sweep with ``launcher=pool launcher.workers=2`` against ``launcher=local`` (one by one).

Both run the same four small training jobs (``model=unet_small``, one epoch
of 1280 images in batches of 4: steps that torch's threads barely speed up),
interleaved, on this machine's
cores: ``launcher=local`` one job after another in one process with torch's
own thread count (one per core), as a user gets it; the pool two jobs at a
time, each in its own process with half the cores (tipi sets the jobs' torch
threads). The figure is the throughput: the local sweep's wall time over the
pool's, launch to exit. Goal ≥ 1.5×.

The pool's own cost per job is read from the sweeps' records: the handoff
(from one job releasing its slot to the next, waiting, job holding it:
``run.json``'s ``slot.handoff_s``), which is on the jobs' critical path, and
the launcher's submit (pickle the job, start its process: ``pool.json``),
which overlaps the running jobs. Goal: claim, start and release ≤ 50 ms
beside the job's run time.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.report import Row, Section
from benchmarks.startup import tipi_cmd
from benchmarks.stats import check, child_env, rounds, run_timed, summarize

JOBS = 4
WORKERS = 2
THROUGHPUT_GOAL = 1.5
COST_GOAL_MS = 50.0
# small batches: Python-bound steps that torch's threads barely speed up (one thread 3.9 s, two 3.6 s for 640
# images), the case a process per core is for; with batch 16 and 1-epoch jobs, which two threads do speed up
# (2.1 s against 2.95 s) and which are shorter than a process start, the pool was 0.82x (2026-12-02)
TRAIN = ("progress=none", "device=cpu", "model=unet_small", "processes.train.epochs=1", "data.limit_train=1280",
         "data.batch_size=4", "processes.result.num_samples=2", "processes.train.num_figure_samples=2")


def _records(sweep: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(sweep.glob("*/run.json"))]


def run(quick: bool) -> Section:
    """All of section 8."""
    repeats = 1 if quick else 3
    section = Section(f"8. Pool: a {JOBS}-job CPU sweep, launcher=pool workers={WORKERS} vs launcher=local")
    seeds = "seed=" + ",".join(str(i) for i in range(1, JOBS + 1))
    env = child_env()
    env.pop("OMP_NUM_THREADS", None)  # each side's own choice: torch's default for local, the pool's share for it
    counter = iter(range(10_000))

    with tempfile.TemporaryDirectory(prefix="tipi-bench-pool-") as tmp:
        work = Path(tmp)
        env["TIPI_SLOTS_DIR"] = str(work / "slots")

        def one(name: str, *extra: str) -> dict[str, Any]:
            sweep = work / f"{name}-{next(counter)}"
            args = ["-m", *TRAIN, seeds, f"hydra.sweep.dir={sweep}", *extra]
            timed = check(run_timed(tipi_cmd(*args), work, env=env, timeout=1200), f"{name} sweep")
            records = _records(sweep)
            if len(records) != JOBS or any(r.get("status") != "succeeded" for r in records):
                raise RuntimeError(f"{name}: expected {JOBS} succeeded jobs in {sweep}")
            result: dict[str, Any] = {"wall": timed.seconds, "job_s": [r.get("duration_s") for r in records]}
            if name == "pool":
                result["handoff_s"] = [r["slot"]["handoff_s"] for r in records if "handoff_s" in r["slot"]]
                log = json.loads((sweep / "pool.json").read_text())
                result["submit_s"] = [j["submit_s"] for j in log["jobs"]]
                result["threads"] = sorted({r["slot"]["threads"] for r in records})
            return result

        local_runs, pool_runs = rounds([
            lambda: one("local", "launcher=local"),
            lambda: one("pool", "launcher=pool", f"launcher.workers={WORKERS}"),
        ], repeats, warmup=0)

    local_wall = summarize([r["wall"] for r in local_runs])
    pool_wall = summarize([r["wall"] for r in pool_runs])
    ratio = local_wall.median / pool_wall.median
    section.rows.append(Row(f"{JOBS}-job sweep, launch to exit (pool: workers={WORKERS})", pool_wall, local_wall,
                            f"{ratio:.2f}× the throughput", f"≥ {THROUGHPUT_GOAL}×", ratio >= THROUGHPUT_GOAL, ratio))
    handoffs = [h for r in pool_runs for h in r["handoff_s"]]
    submits = [s for r in pool_runs for s in r["submit_s"]]
    handoff = summarize(handoffs, "ms", 1e3)
    submit = summarize(submits, "ms", 1e3)
    cost = handoff.median if handoffs else float("nan")
    section.rows.append(Row("pool's own cost per job: slot handoff (release → the waiting job holds it)", handoff,
                            "", "", f"≤ {COST_GOAL_MS:.0f} ms", cost <= COST_GOAL_MS if handoffs else None, cost))
    section.rows.append(Row("…the launcher's submit of a job (pickle, start its process; overlaps running jobs)",
                            submit, "", "", "", None))
    jobs_pool = summarize([s for r in pool_runs for s in r["job_s"] if s is not None])
    jobs_local = summarize([s for r in local_runs for s in r["job_s"] if s is not None])
    section.rows.append(Row("a job's own run time (run.json duration)", jobs_pool, jobs_local, "", "", None))
    threads = sorted({t for r in pool_runs for t in r["threads"]})
    section.rows.append(Row("torch threads per job", str(threads), f"torch default ({os.cpu_count()} cores)", "", "",
                            None))
    section.raw = {"local": local_runs, "pool": pool_runs, "median_submit_ms": statistics.median(submits) * 1e3
                   if submits else None}
    section.notes += [
        f"{repeats} sweep(s) a side of `{' '.join(TRAIN)} {seeds}`, interleaved; launch to exit of the command.",
        "launcher=local runs the jobs one after another in one process (one import of torch, torch's threads on "
        "every core); the pool runs each job in a process of its own (its own imports) on half the cores.",
    ]
    return section
