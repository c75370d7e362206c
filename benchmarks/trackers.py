"""7. Trackers: tipi's own per-step code with each logger, against the plain PyTorch loop.

The same measurement as section 2 (:mod:`benchmarks.steps`: hooks on tipi's
unmodified training process, the plain loop timed by the same clock, tipi's
own code = tipi's "other" minus the plain loop's, ``+experiment=seg``'s
logging cadence), once per logger: none (``metrics.jsonl`` only), WandB
offline, TensorBoard, MLflow (local SQLite store; where the extra is
installed) and the goal's pair, WandB and TensorBoard at once. The writers
run on the logger's worker thread (``tipi.trackers.hub``); the training
thread only writes the ``metrics.jsonl`` line and queues the values. All
variants and the plain loop run in rounds (A B C ... A B C ...), so a
drifting machine hits each alike.

Run alone: ``python -m benchmarks.trackers [--quick]``.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.report import Row, Section
from benchmarks.seg import seg_setup
from benchmarks.startup import PLAIN_TRAIN, TIMED_TRAIN, tipi_cmd
from benchmarks.stats import Stats, child_env, python, rounds, run_timed, summarize
from benchmarks.steps import OWN_CODE_GOAL_US, _load

GOAL_LOGGER = "[wandb,tensorboard]"


def loggers() -> dict[str, list[str]]:
    """Each measured ``logger=`` choice and the overrides it needs; MLflow only where its extra is installed."""
    variants = {
        "none": ["logger=none"],
        "wandb": ["logger=wandb", "logger.trackers.wandb.mode=offline"],
        "tensorboard": ["logger=tensorboard"],
        "mlflow": ["logger=mlflow"],
        GOAL_LOGGER: [f"logger={GOAL_LOGGER}", "logger.trackers.wandb.mode=offline"],
    }
    if importlib.util.find_spec("mlflow") is None:
        del variants["mlflow"]
    return variants


def run(quick: bool) -> Section:
    """One row per logger: tipi's own per-step code (median) and the step time against the plain loop."""
    section = Section("7. Trackers: per-step cost of each logger (`+experiment=seg`)")
    warmup, measured, repeats = (4, 24, 2) if quick else (5, 40, 4)
    total = warmup + measured
    setup = seg_setup()
    batch = setup["data"]["batch_size"]
    setup["data"].update(num_train=total * batch, num_val=batch, num_test=batch)
    counter = iter(range(10_000))
    variants = loggers()

    with tempfile.TemporaryDirectory(prefix="tipi-bench-trackers-") as tmp:
        work = Path(tmp)

        def tipi(name: str, overrides: list[str]) -> Any:
            def measure() -> dict[str, Any]:
                i = next(counter)
                report = work / f"tipi-{i}.json"
                cmd = tipi_cmd(
                    "+experiment=seg", "progress=none", *overrides, f"hydra.run.dir={work / f'run-{i}'}",
                    f"processes.train._target_={TIMED_TRAIN}", f"+processes.train.report_to={report}",
                    "processes.train.epochs=1", f"data.num_train={total * batch}", f"data.num_val={batch}",
                    f"data.num_test={batch}", "~processes.test", "~processes.result", "run.objective=null",
                )
                timed = run_timed(cmd, work, env=child_env(WANDB_SILENT="true"))
                return _load(report, f"tipi training, logger={name}", timed)

            return measure

        def plain() -> dict[str, Any]:
            report = work / f"plain-{next(counter)}.json"
            timed = run_timed([python(), str(PLAIN_TRAIN), "--setup", json.dumps(setup), "--steps", str(total),
                               "--report", str(report)], work)
            return _load(report, "plain loop", timed)

        # one discarded round in a full run: a logger's first run pays first-time costs (creating the MLflow
        # store, compiling and reading its modules from a cold cache) that no later run pays
        *tipi_runs, plain_runs = rounds([*(tipi(n, o) for n, o in variants.items()), plain], repeats,
                                        warmup=0 if quick else 1)

    def pooled(runs: list[dict[str, Any]], key: str) -> list[float]:
        return [x for r in runs for x in r["steps"][key][warmup:]]

    own_p = summarize(pooled(plain_runs, "other"), "µs", 1e6)
    period_p = statistics.median(pooled(plain_runs, "period"))
    log_every = tipi_runs[0][0].get("log_every", 0)
    for name, runs in zip(variants, tipi_runs, strict=True):
        own_t = summarize(pooled(runs, "other"), "µs", 1e6)
        own = own_t.median - own_p.median
        per_run = [statistics.median(r["steps"]["other"][warmup:]) * 1e6 for r in runs]
        step_ratio = statistics.median(pooled(runs, "period")) / period_p
        log_steps = [r["steps"]["other"][i] for r in runs for i in range(warmup, len(r["steps"]["other"]))
                     if log_every and (i + 1) % log_every == 0]
        on_log = f"; steps that log: {statistics.median(log_steps) * 1e6:.0f} µs" if log_steps else ""
        goal = name == GOAL_LOGGER
        section.rows.append(Row(
            f"`logger={name}`: loop code outside fetch and compute, per step", own_t, own_p,
            f"tipi's own: {own:+.0f} µs (runs {min(per_run):.0f}–{max(per_run):.0f} µs); "
            f"step {step_ratio:.3f}× plain{on_log}",
            f"tipi's own ≤ {OWN_CODE_GOAL_US:.0f} µs median" if goal else "",
            own <= OWN_CODE_GOAL_US if goal else None, own))
    section.raw = {"loggers": list(variants), "tipi": tipi_runs, "plain": plain_runs, "warmup": warmup}
    section.notes += [
        f"{repeats} runs of each logger and of the plain loop, in rounds (after {0 if quick else 1} discarded "
        f"round), {measured - 1} timed steps each after "
        f"{warmup} warm-up steps, batch {batch}; progress=none, logging every {log_every} steps "
        "(metrics.jsonl always; WandB offline, TensorBoard event files, MLflow in a local SQLite store).",
        "Timed as in section 2. The trackers write on the logger's worker thread, which competes for the same "
        "cores: their own cost shows in the step time (the ×-plain figure) and on the steps that log, not in "
        "tipi's own code between steps.",
    ]
    if "mlflow" not in variants:
        section.notes.append("MLflow not measured: the tipi[mlflow] extra is not installed.")
    return section


if __name__ == "__main__":
    result = run("--quick" in sys.argv[1:])
    for row in result.rows:
        tipi_fig, plain_fig = (x.fmt() if isinstance(x, Stats) else x for x in (row.tipi, row.baseline))
        print(f"{row.what}: tipi {tipi_fig}, plain loop {plain_fig}; {row.compare}; goal {row.goal or '-'}: "
              f"{'met' if row.met else 'missed' if row.met is False else '-'}")
    print(*result.notes, sep="\n")
