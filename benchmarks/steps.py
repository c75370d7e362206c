"""2. Per-step overhead: tipi's training process of ``+experiment=seg`` against a plain PyTorch loop.

tipi runs as a user would watch it: Rich progress bars drawn (to a file that
Rich is told is a terminal), ``metrics.jsonl``, and WandB offline. Both sides
train the same model on the same data with the same batch size and thread
count, timed by the same :class:`~benchmarks.probes.step_clock.StepClock`;
the first steps of each run are warm-up and are not counted.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.report import Row, Section
from benchmarks.seg import seg_setup
from benchmarks.startup import PLAIN_TRAIN, TIMED_TRAIN, tipi_cmd
from benchmarks.stats import check, child_env, interleave, python, run_timed, summarize

STEP_RATIO_GOAL = 1.01
OWN_CODE_GOAL_US = 50.0
REDRAWS_GOAL_PER_S = 5.0  # "at most a few times a second"; tipi's default is 4


def _load(path: Path, what: str, timed: Any) -> dict[str, Any]:
    check(timed, what)
    if not path.exists():
        raise RuntimeError(f"{what}: no report written\n{timed.stderr[-2000:]}")
    return json.loads(path.read_text())


def run(quick: bool) -> Section:
    """All of section 2."""
    section = Section("2. Per-step overhead (training, `+experiment=seg`)")
    # more, shorter runs: on 2 cores the noise is between runs (thread placement), not between steps
    warmup, measured, repeats = (4, 32, 2) if quick else (5, 40, 8)
    total = warmup + measured
    setup = seg_setup()
    batch = setup["data"]["batch_size"]
    setup["data"].update(num_train=total * batch, num_val=batch, num_test=batch)  # as tipi's overrides below
    setup_json = json.dumps(setup)
    counter = iter(range(10_000))

    with tempfile.TemporaryDirectory(prefix="tipi-bench-steps-") as tmp:
        work = Path(tmp)
        # Rich draws as on a terminal (its output goes to a file, so nothing is lost to a pipe).
        tty_env = child_env(TTY_COMPATIBLE="1", TERM="xterm-256color", COLUMNS="120")

        def a() -> dict[str, Any]:
            i = next(counter)
            report, stderr = work / f"tipi-{i}.json", work / f"tipi-{i}.stderr"
            cmd = tipi_cmd(
                "+experiment=seg", "progress=rich", "logger=wandb", "logger.trackers.wandb.mode=offline",
                f"hydra.run.dir={work / f'run-{i}'}",
                f"processes.train._target_={TIMED_TRAIN}", f"+processes.train.report_to={report}",
                "processes.train.epochs=1", f"data.num_train={total * batch}", f"data.num_val={batch}",
                f"data.num_test={batch}", "~processes.test", "~processes.result",
            )
            timed = run_timed(cmd, work, env=tty_env, stderr_path=stderr)
            timed.stderr = stderr.read_text(errors="replace")
            return _load(report, "tipi training", timed)

        def b() -> dict[str, Any]:
            report = work / f"plain-{next(counter)}.json"
            timed = run_timed([python(), str(PLAIN_TRAIN), "--setup", setup_json, "--steps", str(total),
                               "--report", str(report)], work)
            return _load(report, "plain loop", timed)

        tipi_runs, plain_runs = interleave(a, b, repeats, warmup=0)

    def pooled(runs: list[dict[str, Any]], key: str) -> list[float]:
        return [x for r in runs for x in r["steps"][key][warmup:]]

    def per_run_median(runs: list[dict[str, Any]], key: str) -> list[float]:
        return [statistics.median(r["steps"][key][warmup:]) for r in runs]

    tipi_period, plain_period = pooled(tipi_runs, "period"), pooled(plain_runs, "period")
    t, p = summarize(tipi_period, "ms", 1e3), summarize(plain_period, "ms", 1e3)
    ratio = t.median / p.median
    pair_ratios = sorted(x / y for x, y in zip(per_run_median(tipi_runs, "period"),
                                               per_run_median(plain_runs, "period"), strict=True))
    section.rows.append(Row("training step (fetch to next fetch), median", t, p,
                            f"{ratio:.3f}× (runs {pair_ratios[0]:.3f}–{pair_ratios[-1]:.3f})",
                            f"≤ {STEP_RATIO_GOAL}× plain loop", ratio <= STEP_RATIO_GOAL, ratio))
    assert t.mean is not None and p.mean is not None
    section.rows.append(Row("training step, mean (includes logging and checkpoint steps)",
                            f"{t.mean:.3g} ms", f"{p.mean:.3g} ms", f"{t.mean / p.mean:.3f}×", "", None))
    own_t = summarize(pooled(tipi_runs, "other"), "µs", 1e6)
    own_p = summarize(pooled(plain_runs, "other"), "µs", 1e6)
    own = own_t.median - own_p.median
    section.rows.append(Row("loop code outside fetch and compute, per step", own_t, own_p,
                            f"tipi's own: {own:+.0f} µs", f"tipi's own ≤ {OWN_CODE_GOAL_US:.0f} µs median",
                            own <= OWN_CODE_GOAL_US, own))
    log_every = tipi_runs[0].get("log_every", 0)
    if log_every:
        log_steps = [r["steps"]["other"][i] for r in tipi_runs for i in range(warmup, len(r["steps"]["other"]))
                     if (i + 1) % log_every == 0]
        if log_steps:
            section.rows.append(Row(f"…on the steps that log (every {log_every}: metrics.jsonl + WandB)",
                                    summarize(log_steps, "µs", 1e6), "", "", "", None))
    for key, label in (("compute", "forward + backward + optimizer step"), ("fetch", "DataLoader next()")):
        section.rows.append(Row(label, summarize(pooled(tipi_runs, key), "ms", 1e3),
                                summarize(pooled(plain_runs, key), "ms", 1e3), "", "", None))
    redraws = [r["redraws"] / r["train_seconds"] for r in tipi_runs if r.get("redraws") is not None]
    if redraws:
        rate = summarize(redraws, "/s")
        section.rows.append(Row("progress redraws per second while training (Rich)", rate, "", "",
                                f"≤ {REDRAWS_GOAL_PER_S:g}/s", rate.max <= REDRAWS_GOAL_PER_S, rate.max))
    else:
        section.rows.append(Row("progress redraws per second while training (Rich)", "not measured", "", "",
                                f"≤ {REDRAWS_GOAL_PER_S:g}/s", None))
    threads = ({r["threads"] for r in tipi_runs}, {r["threads"] for r in plain_runs})
    section.rows.append(Row("torch threads", str(sorted(threads[0])), str(sorted(threads[1])), "",
                            "equal", threads[0] == threads[1]))
    section.raw = {"tipi": tipi_runs, "plain": plain_runs, "redraws_per_s": redraws, "warmup": warmup}
    section.notes += [
        f"{repeats} runs a side, {measured - 1} timed steps each after {warmup} warm-up steps, batch {batch}; "
        f"model {setup['model']}, {setup['optimizer']['_target_']} {setup['optimizer']['kwargs']}, "
        f"scheduler {setup['scheduler']['_target_'] if setup['scheduler'] else None} (built on both sides).",
        f"tipi: progress=rich, logger=wandb (metrics.jsonl and an offline WandB run); log every {log_every} steps; "
        f"checkpoint every {tipi_runs[0].get('checkpoint_every')} steps.",
        "Timed by hooks on tipi's unmodified TrainingProcess (benchmarks/probes/timed_train.py): a forward "
        "pre-hook and an optimizer step post-hook bound the compute, a wrapped DataLoader the fetch; the rest "
        "of each iteration is the loop's own code. The plain loop is timed by the same hooks, so tipi's own "
        "code is tipi's figure minus the plain loop's (which moves the batch and zeroes the gradients too).",
        "Rich draws as on a terminal (TTY_COMPATIBLE=1, output to a file); redraws are the renders of its live "
        "display counted during the training process, over that process's wall time.",
    ]
    return section
