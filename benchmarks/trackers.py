"""7. Trackers: tipi's own per-step code with ``logger=[wandb,tensorboard]`` against the plain PyTorch loop.

The same measurement as section 2 (:mod:`benchmarks.steps`: hooks on tipi's
unmodified training process, the plain loop timed by the same clock, tipi's
own code = tipi's "other" minus the plain loop's, ``+experiment=seg``'s
logging cadence), with two trackers at once: WandB offline and TensorBoard.
The writers run on the logger's worker thread (``tipi.trackers.hub``); the
training thread only writes the ``metrics.jsonl`` line and queues the values.

Run alone: ``python -m benchmarks.trackers [--quick]``.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.report import Row, Section
from benchmarks.seg import seg_setup
from benchmarks.startup import PLAIN_TRAIN, TIMED_TRAIN, tipi_cmd
from benchmarks.stats import Stats, child_env, interleave, python, run_timed, summarize
from benchmarks.steps import OWN_CODE_GOAL_US, _load

LOGGER = "logger=[wandb,tensorboard]"


def run(quick: bool) -> Section:
    """One row: tipi's own per-step code, median, with WandB and TensorBoard logging every step."""
    section = Section("7. Trackers (`logger=[wandb,tensorboard]`, `+experiment=seg`)")
    warmup, measured, repeats = (4, 24, 2) if quick else (5, 40, 4)
    total = warmup + measured
    setup = seg_setup()
    batch = setup["data"]["batch_size"]
    setup["data"].update(num_train=total * batch, num_val=batch, num_test=batch)
    counter = iter(range(10_000))

    with tempfile.TemporaryDirectory(prefix="tipi-bench-trackers-") as tmp:
        work = Path(tmp)

        def a() -> dict[str, Any]:
            i = next(counter)
            report = work / f"tipi-{i}.json"
            cmd = tipi_cmd(
                "+experiment=seg", "progress=none", LOGGER, "logger.trackers.wandb.mode=offline",
                f"hydra.run.dir={work / f'run-{i}'}",
                f"processes.train._target_={TIMED_TRAIN}", f"+processes.train.report_to={report}",
                "processes.train.epochs=1", f"data.num_train={total * batch}", f"data.num_val={batch}",
                f"data.num_test={batch}", "~processes.test", "~processes.result", "run.objective=null",
            )
            timed = run_timed(cmd, work, env=child_env(WANDB_SILENT="true"))
            return _load(report, "tipi training with trackers", timed)

        def b() -> dict[str, Any]:
            report = work / f"plain-{next(counter)}.json"
            timed = run_timed([python(), str(PLAIN_TRAIN), "--setup", json.dumps(setup), "--steps", str(total),
                               "--report", str(report)], work)
            return _load(report, "plain loop", timed)

        tipi_runs, plain_runs = interleave(a, b, repeats, warmup=0)

    def pooled(runs: list[dict[str, Any]]) -> list[float]:
        return [x for r in runs for x in r["steps"]["other"][warmup:]]

    own_t, own_p = summarize(pooled(tipi_runs), "µs", 1e6), summarize(pooled(plain_runs), "µs", 1e6)
    own = own_t.median - own_p.median
    per_run = [statistics.median(r["steps"]["other"][warmup:]) * 1e6 for r in tipi_runs]
    log_every = tipi_runs[0].get("log_every", "?")
    section.rows.append(Row(f"loop code outside fetch and compute, per step (logging every {log_every})", own_t, own_p,
                            f"tipi's own: {own:+.0f} µs (runs {min(per_run):.0f}–{max(per_run):.0f} µs)",
                            f"tipi's own ≤ {OWN_CODE_GOAL_US:.0f} µs median", own <= OWN_CODE_GOAL_US, own))
    section.raw = {"tipi": tipi_runs, "plain": plain_runs, "warmup": warmup}
    section.notes += [
        f"{repeats} runs a side, {measured - 1} timed steps each after {warmup} warm-up steps, batch {batch}; "
        f"progress=none, metrics.jsonl + WandB (offline) + TensorBoard, logging every {log_every} steps.",
        "Timed as in section 2; the trackers write on the logger's worker thread, which competes for the "
        "same cores (their own cost shows in the step time, not in tipi's own code).",
    ]
    return section


if __name__ == "__main__":
    result = run("--quick" in sys.argv[1:])
    for row in result.rows:
        tipi, plain = (x.fmt() if isinstance(x, Stats) else x for x in (row.tipi, row.baseline))
        print(f"{row.what}: tipi {tipi}, plain loop {plain}; {row.compare}; goal {row.goal}: "
              f"{'met' if row.met else 'missed'}")
    print(*result.notes, sep="\n")
