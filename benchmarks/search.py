"""9. Search: ASHA against no pruning, workers against batches, and tipi's own cost per trial.

Every search here trains ``model=unet_small`` on small shapes data on the CPU
(``debug=fast``: 32-pixel images, 64 validation and 64 test images, no result
figures), each one run of ``python -m tipi -m ... search=asha``, on this
machine, in this one run:

1. **Pruning**: the same search twice, ``search.pruner=asha`` (as it comes:
   rungs at epochs 1 and 3) and ``search.pruner=none``: ``optimizer.lr`` over
   ``tag(log, interval(1e-5, 1e-1))`` (the ends of that range train badly:
   trials to prune), the random sampler with one seed (both searches sample
   the same learning rates in the same order), one worker
   (``launcher=local``), one torch thread on both sides (a trial both run to
   the end scores the same). The target is the unpruned search's best
   objective minus 0.01. Each search's trials are taken in the order they
   ended; its epochs spent are the sum of each trial's epochs trained (a
   pruned trial's last reported epoch, a complete one's all) up to and
   including the first complete trial whose objective reaches the target.
   Goal: ASHA's epochs ≤ 0.4× the unpruned search's. One order of trials is
   one draw of luck (a good trial early leaves pruning nothing to save; a
   best trial that starts slowly is pruned), so the unpruned trials'
   reported values are also replayed in 200 random orders through Optuna's
   own ``SuccessiveHalvingPruner`` with the same settings, in memory, as
   context; the replay of the measured order must reproduce the ASHA search.
2. **Workers**: uneven trials (``processes.train.epochs`` over ``choice(1,
   3, 6)``, and ``optimizer.lr``), no pruning, ``launcher=pool
   launcher.workers=2``. A worker is busy from a trial's ask to its tell
   (Optuna's ``datetime_start`` and ``datetime_complete`` in the study's
   journal). Busy fraction = the sum of the trials' spans / (workers × the
   time from the first trial's start to the last trial's end). Goal ≥ 0.95.
   Beside it, a stand-in for Hydra's Optuna sweeper in batch mode
   (hydra-optuna-sweeper left tipi): the same spans in batches of 2, a batch
   starting when its slowest trial has ended, nothing between batches: the
   sum of the spans / (2 × the sum of each batch's longest), the median over
   1000 orders of the trials (the workers' first trials, which paid the
   imports, as the first batch).
3. **Cost per trial**: a search with ``search=asha``'s defaults (TPE, ASHA)
   of 2-epoch trials, in one process (``launcher=local``), timed in-process
   by ``benchmarks/probes/search_clock.py``: ask (the study's lock, Optuna's
   ``ask`` and the trial's attributes: journal writes), compose (the trial's
   config), gate (the check and build of its pipeline before it trains), tell
   (a journal write), the trial's entry in ``run.json``, and each epoch's
   report to the trial with the pruner's decision. Their sum per trial, the
   first trial (one-time imports) left out. Goal ≤ 50 ms.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.report import Row, Section
from benchmarks.startup import tipi_cmd
from benchmarks.stats import check, child_env, python, run_timed, summarize

PRUNING_GOAL = 0.4
BUSY_GOAL = 0.95
COST_GOAL_MS = 50.0
WITHIN = 0.01
SEED = 0
WORKERS = 2
REPLAYS = 200
SHUFFLES = 1000
MONITOR = "val/mean_iou"  # processes.train.monitor: what the pruner sees
OBJECTIVE = "test/mean_iou"  # run.objective: what the search maximizes
TRAIN = ("debug=fast", "model=unet_small", "progress=none", "device=cpu", "data.limit_val=64", "data.limit_test=64",
         "processes.result=null", "processes.train.figures_every_n_epochs=0",
         "processes.train.checkpoint_every_n_steps=1000", "processes.train.log_every_n_steps=8")
LR_SPACE = "optimizer.lr=tag(log, interval(1e-5, 1e-1))"
UNEVEN_SPACE = ("processes.train.epochs=choice(1, 3, 6)", "optimizer.lr=tag(log, interval(1e-4, 1e-2))")
COST_STEPS = ("ask", "compose", "gate", "tell", "record")


def search_args(sweep: Path, trials: int, *extra: str) -> list[str]:
    """``-m`` arguments of a seeded search of ``trials`` into ``sweep`` (``extra``: space, pruner, launcher)."""
    return ["-m", *TRAIN, "search=asha", f"search.trials={trials}", f"search.seed={SEED}",
            f"hydra.sweep.dir={sweep}", *extra]


def load_trials(sweep: Path) -> list[dict[str, Any]]:
    """The study's trials in the order they ended, each with its span, value, epochs and learning curve."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(sweep / "study.journal")))
    study = optuna.load_study(study_name="tipi", storage=storage)
    trials = []
    for t in study.get_trials(deepcopy=False):
        if t.datetime_start is None or t.datetime_complete is None or t.user_attrs.get("gave_back"):
            continue
        record = json.loads((sweep / str(t.number) / "run.json").read_text())
        trials.append({"number": t.number, "state": t.state.name.lower(), "value": t.value,
                       "params": dict(t.params), "worker": t.user_attrs.get("worker"),
                       "start": t.datetime_start.timestamp(),
                       "end": t.datetime_complete.timestamp(), "duration_s": record.get("duration_s"),
                       "epochs": int((record.get("trial") or {}).get("last_step") or 0),
                       "threads": (record.get("slot") or {}).get("threads"),
                       "curve": learning_curve(sweep / str(t.number) / "metrics.jsonl")})
    return sorted(trials, key=lambda t: (t["end"], t["number"]))


def learning_curve(path: Path) -> list[float]:
    """The monitored value at the end of each epoch, as the training process reported it to the trial."""
    curve = []
    for line in path.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if "epoch" in entry and MONITOR in entry:
            curve.append(float(entry[MONITOR]))
    return curve


def epochs_to_reach(trials: list[dict[str, Any]], target: float) -> float:
    """Epochs spent, in the order given, up to the first complete trial scoring ≥ ``target``; inf if none does."""
    spent = 0
    for t in trials:
        spent += t["epochs"]
        if t["state"] == "complete" and t["value"] is not None and t["value"] >= target:
            return float(spent)
    return math.inf


def best_value(trials: list[dict[str, Any]]) -> float:
    """The best (largest) objective of the complete trials."""
    values = [t["value"] for t in trials if t["state"] == "complete" and t["value"] is not None]
    if not values:
        raise RuntimeError("no trial of the search completed")
    return max(values)


def replay_asha(trials: list[dict[str, Any]], min_epochs: int = 1, reduction_factor: int = 3) -> list[dict[str, Any]]:
    """Unpruned ``trials`` in the given order as ASHA would have run them: Optuna's pruner on their curves."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=reduction_factor)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    out = []
    for t in trials:
        trial = study.ask()
        state, epochs = "complete", len(t["curve"])
        for step, value in enumerate(t["curve"], start=1):
            trial.report(value, step)
            if trial.should_prune():
                state, epochs = "pruned", step
                break
        study.tell(trial, t["value"] if state == "complete" else None,
                   state=TrialState.COMPLETE if state == "complete" else TrialState.PRUNED)
        out.append({**t, "state": state, "epochs": epochs})
    return out


def replay_ratios(unpruned: list[dict[str, Any]], target: float, orders: int) -> list[float]:
    """ASHA's epochs to the target over the unpruned search's, for ``orders`` random orders of its trials."""
    rng = random.Random(SEED)
    ratios = []
    for _ in range(orders):
        order = rng.sample(unpruned, len(unpruned))
        ratios.append(epochs_to_reach(replay_asha(order), target) / epochs_to_reach(order, target))
    return ratios


def busy_fraction(trials: list[dict[str, Any]], workers: int, drain: bool = False) -> float:
    """The trials' busy time over ``workers`` × the time from the first start to the last trial's start.

    After the last trial has started there is nothing left for an idle worker to take, whatever the
    scheduler: that drain is left out (``drain=True``: counted, to the last trial's end).
    """
    first = min(t["start"] for t in trials)
    end = max(t["end"] for t in trials) if drain else max(t["start"] for t in trials)
    busy = sum(max(0.0, min(t["end"], end) - max(t["start"], first)) for t in trials)
    return busy / (workers * (end - first))


def batch_busy(durations: list[float], size: int, drain: bool = False) -> float:
    """Busy fraction of ``durations`` run in batches of ``size``, each as long as its longest, to the last batch's start
    (``drain=True``: to its end)."""
    batches = [durations[i:i + size] for i in range(0, len(durations), size)]
    counted = batches if drain else batches[:-1]
    return sum(sum(b) for b in counted) / (size * sum(max(b) for b in counted))


def batch_orders(trials: list[dict[str, Any]], orders: int) -> list[list[float]]:
    """``orders`` sequences of the trials' spans for the batch stand-in: each worker's first trial (which paid
    the worker's one-time imports, as a batch launcher's first batch does) first, the others in a random order."""
    firsts: dict[Any, dict[str, Any]] = {}
    for t in sorted(trials, key=lambda t: t["start"]):
        firsts.setdefault(t["worker"], t)
    head = [t["end"] - t["start"] for t in firsts.values()]
    rest = [t["end"] - t["start"] for t in trials if all(t is not f for f in firsts.values())]
    rng = random.Random(SEED)
    return [head + rng.sample(rest, len(rest)) for _ in range(orders)]


def repeats(trials: list[dict[str, Any]]) -> int:
    """Trials whose values are those of an earlier trial."""
    seen: set[str] = set()
    count = 0
    for t in sorted(trials, key=lambda t: t["number"]):
        key = json.dumps(t["params"], sort_keys=True)
        count += key in seen
        seen.add(key)
    return count


def _search(work: Path, name: str, trials: int, *extra: str, cmd: list[str] | None = None,
            env: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], float]:
    """Run one search into ``work/name``; its trials (in the order they ended) and its wall time."""
    sweep = work / name
    args = search_args(sweep, trials, *extra)
    timed = check(run_timed(cmd + args if cmd else tipi_cmd(*args), work, env=env or child_env(), timeout=900),
                  f"search {name}")
    found = load_trials(sweep)
    if len(found) != trials:
        raise RuntimeError(f"search {name}: expected {trials} trials in {sweep}, found {len(found)}")
    return found, timed.seconds


def _ratio_text(ratio: float, asha: float, none: float) -> str:
    """The pruning row's comparison: the ratio and both searches' epochs, or that ASHA never got there."""
    if math.isinf(asha):
        return "ASHA never reached it"
    return f"{ratio:.2f}× ({asha:.0f} vs {none:.0f} epochs)"


def measure_pruning(section: Section, work: Path, quick: bool) -> dict[str, Any]:
    """Row 1: ASHA against the same search unpruned, epochs spent to reach the unpruned best − 0.01."""
    trials, epochs = (8, 6) if quick else (16, 8)
    extra = [LR_SPACE, "search.sampler=random", f"processes.train.epochs={epochs}", "launcher=local",
             f"data.limit_train={128 if quick else 256}", "data.batch_size=8"]
    env = child_env(OMP_NUM_THREADS="1")  # both sides alike: a trial both run to the end scores the same
    asha, asha_wall = _search(work, "asha", trials, *extra, "search.pruner=asha", env=env)
    none, none_wall = _search(work, "none", trials, *extra, "search.pruner=none", env=env)
    target = best_value(none) - WITHIN
    total_asha, total_none = sum(t["epochs"] for t in asha), sum(t["epochs"] for t in none)
    spent_asha, spent_none = epochs_to_reach(asha, target), epochs_to_reach(none, target)
    ratio = spent_asha / total_none
    section.rows.append(Row(f"epochs ASHA spends to reach the unpruned search's best − {WITHIN}, over the epochs "
                            f"the unpruned search spends to find it ({trials} trials of {epochs} epochs)",
                            f"{spent_asha:g} epochs", f"{total_none:g} epochs",
                            _ratio_text(ratio, spent_asha, total_none), f"≤ {PRUNING_GOAL}×",
                            ratio <= PRUNING_GOAL, ratio))
    section.rows.append(Row("…both counted to their first trial within the target (the unpruned search cannot "
                            "know it has its best before its last trial)", f"{spent_asha:g} epochs",
                            f"{spent_none:g} epochs", _ratio_text(spent_asha / spent_none, spent_asha, spent_none),
                            "", None))
    replay = _replay_row(section, asha, none, target)
    pruned = sum(t["state"] == "pruned" for t in asha)
    section.rows.append(Row("…whole search: epochs, trials pruned, best objective, wall",
                            f"{total_asha} epochs, {pruned} pruned, best {best_value(asha):.3f}, {asha_wall:.0f} s",
                            f"{total_none} epochs, best {best_value(none):.3f}, {none_wall:.0f} s",
                            f"{total_asha / total_none:.2f}× the epochs", "", None))
    section.notes += [
        f"Pruning: `{LR_SPACE}`, `search.sampler=random search.seed={SEED}`, {trials} trials of {epochs} epochs "
        f"(`{' '.join(extra[3:])}`), one torch thread, once with `search.pruner=asha` (as it comes: min_epochs 1, "
        "reduction factor 3, rungs at epochs 1 and 3) and once with `search.pruner=none`; both sample the same "
        f"learning rates in the same order. Target: the unpruned search's best objective ({OBJECTIVE}) − {WITHIN} "
        f"= {target:.4f}. Epochs spent: the sum of the trials' epochs trained (a pruned trial's last reported "
        "epoch), in the order the trials ended, up to and including the first complete trial at or above the "
        "target. The goal row sets ASHA's against the whole unpruned search's epochs: that search has found its "
        "best only when its budget is spent; the next row counts both to their first trial within the target.",
        "The replay runs Optuna's SuccessiveHalvingPruner (same settings) over the unpruned trials' reported "
        f"values ({MONITOR}) in memory; replaying the measured order reproduces {replay['agree']} of the ASHA "
        f"search's {trials} trials (pruned at the same epoch, or complete with the same objective).",
    ]
    return {"asha": asha, "none": none, "target": target, **replay}


def _replay_row(section: Section, asha: list[dict[str, Any]], none: list[dict[str, Any]],
                target: float) -> dict[str, Any]:
    """The context row of the replays; how many of the ASHA search's trials the replay of its order reproduces."""
    ratios = replay_ratios(none, target, REPLAYS)
    finite = sorted(r for r in ratios if math.isfinite(r))
    if finite:
        spread = summarize(finite)
        text = f"{spread.median:.2f}× [{spread.min:.2f}–{spread.max:.2f}] in the {len(finite)} orders that reached it"
    else:
        text = "never reached"
    section.rows.append(Row(f"…the same, ASHA replayed in {REPLAYS} random orders of the unpruned trials", text, "",
                            f"ASHA never reached the target in {REPLAYS - len(finite)} of {REPLAYS}", "", None,
                            statistics.median(ratios)))
    by_number = {t["number"]: t for t in asha}
    agree = 0
    for r in replay_asha(none):
        a = by_number.get(r["number"], {})
        same_value = r["state"] == "pruned" or a.get("value") == r["value"]
        agree += a.get("state") == r["state"] and a.get("epochs") == r["epochs"] and same_value
    return {"replay_ratios": ratios, "agree": agree}


def measure_workers(section: Section, work: Path, quick: bool) -> dict[str, Any]:
    """Row 2: tipi's workers' busy fraction on uneven trials, beside batches of the same trials."""
    trials = 8 if quick else 16
    env = child_env(TIPI_SLOTS_DIR=str(work / "slots"))
    env.pop("OMP_NUM_THREADS", None)  # the pool gives each worker its share of the cores
    found, wall = _search(work, "workers", trials, *UNEVEN_SPACE, "search.sampler=random", "search.pruner=none",
                          f"data.limit_train={128 if quick else 256}", "launcher=pool",
                          f"launcher.workers={WORKERS}", env=env)
    busy = busy_fraction(found, WORKERS)
    spans = [t["end"] - t["start"] for t in found]
    orders = batch_orders(found, SHUFFLES)
    batches = [batch_busy(order, WORKERS) for order in orders]
    drained = busy_fraction(found, WORKERS, drain=True)
    batches_drained = statistics.median(batch_busy(order, WORKERS, drain=True) for order in orders)
    by_number = [t["end"] - t["start"] for t in sorted(found, key=lambda t: t["number"])]
    batch = statistics.median(batches)
    section.rows.append(Row(f"worker busy fraction, {trials} uneven trials, {WORKERS} workers (stand-in: Hydra's "
                            "Optuna sweeper in batches)", f"{busy:.3f}", f"{batch:.3f}",
                            f"{busy / batch:.2f}× the batches'", f"≥ {BUSY_GOAL}", busy >= BUSY_GOAL, busy))
    section.rows.append(Row("…the same to the last trial's end (the drain counted: one worker done, the other "
                            "finishing the last trial)", f"{drained:.3f}", f"{batches_drained:.3f}", "", "", None))
    first, last = min(t["start"] for t in found), max(t["end"] for t in found)
    section.rows.append(Row("…first trial's start to last trial's end", f"{last - first:.1f} s", "", "", "", None))
    section.rows.append(Row("…a trial's span, ask to tell", summarize(spans), "", "", "", None))
    epochs = sorted(t["params"].get("processes.train.epochs") for t in found)
    threads = sorted({t["threads"] for t in found}, key=str)
    section.rows.append(Row("…trials that repeat an earlier trial's values (of "
                            f"{trials}; the lr is continuous: a repeat is two workers sampling alike)",
                            str(repeats(found)), "", "", "", None))
    section.notes += [
        f"Workers: `{' '.join(UNEVEN_SPACE)}`, `search.sampler=random search.seed={SEED} search.pruner=none`, "
        f"{trials} trials (epochs drawn: {epochs}), `launcher=pool launcher.workers={WORKERS}` (torch threads "
        f"per trial: {threads}), launch to exit {wall:.0f} s. Busy: from a trial's ask to its tell (the study's "
        "journal): a worker's start up to its first ask is outside the window, its first trial (which imports "
        "torch) is busy, the gaps between trials are idle. The window ends when the last trial starts: after "
        "that no scheduler has work for an idle worker (the next row counts that drain too, on both sides).",
        f"The stand-in for Hydra's Optuna sweeper (n_jobs={WORKERS}) runs the same spans in batches of {WORKERS}, "
        f"each as long as its longest, with nothing between batches (which favours it); its first batch is the "
        "workers' first trials (they paid the workers' imports, as a batch launcher's first batch does), then "
        f"the others in random order: the median over {SHUFFLES} orders [{min(batches):.3f}–{max(batches):.3f}]; "
        f"in the trials' number order {batch_busy(by_number, WORKERS):.3f}; its window ends when its last batch "
        "starts.",
    ]
    return {"trials": found, "busy": busy, "batch_busy": batches, "wall": wall}


def cost_per_trial(clock: dict[str, dict[str, list[float]]]) -> dict[str, list[float]]:
    """Per trial (the first left out: one-time imports), seconds: each step, ``report`` summed, and ``total``."""
    out: dict[str, list[float]] = {k: [] for k in (*COST_STEPS, "report", "report_each", "total")}
    for number in sorted(clock, key=int)[1:]:
        steps = clock[number]
        for key in COST_STEPS:
            out[key].append(sum(steps.get(key, [])))
        out["report"].append(sum(steps.get("report", [])))
        out["report_each"] += steps.get("report", [])
        out["total"].append(sum(out[k][-1] for k in (*COST_STEPS, "report")))
    return out


def measure_cost(section: Section, work: Path, quick: bool) -> dict[str, Any]:
    """Row 3: tipi's own cost per trial, timed in-process inside a real search."""
    trials = 10 if quick else 20
    out = work / "clock.json"
    env = child_env(OMP_NUM_THREADS="1", TIPI_BENCH_SEARCH_CLOCK=str(out))
    found, _ = _search(work, "cost", trials, LR_SPACE, "processes.train.epochs=2", "launcher=local",
                       cmd=[python(), "-m", "benchmarks.probes.search_clock"], env=env)
    clock = json.loads(out.read_text())
    cost = cost_per_trial(clock)
    # Hydra's run_job and tipi's runner around the run's own record (.hydra/, logging, run.json start and end)
    durations = {str(t["number"]): t["duration_s"] for t in found}
    outside = [sum(c.get("run_job", [])) - sum(c.get("gate", [])) - durations[n]
               for n, c in sorted(clock.items(), key=lambda kv: int(kv[0]))[1:] if durations.get(n) is not None]
    total = summarize(cost["total"], "ms", 1e3)
    section.rows.append(Row("tipi's own cost per trial: ask + compose + gate + tell + run.json + its epochs' reports",
                            total, "", "", f"≤ {COST_GOAL_MS:.0f} ms", total.median <= COST_GOAL_MS, total.median))
    labels = {"ask": "…ask (lock, Optuna's ask, the trial's attributes: journal writes)",
              "compose": "…compose the trial's config", "gate": "…gate: check and build its pipeline",
              "tell": "…tell (journal write)", "record": "…the trial's entry in run.json"}
    for key, what in labels.items():
        section.rows.append(Row(what, summarize(cost[key], "ms", 1e3), "", "", "", None))
    section.rows.append(Row("…one epoch's report and the pruner's decision", summarize(cost["report_each"], "ms", 1e3),
                            "", "", "", None))
    section.rows.append(Row("besides (not counted): Hydra's run_job and tipi's runner around the run's record "
                            "(.hydra/, logging, provenance; any multirun job pays it)",
                            summarize(outside, "ms", 1e3), "", "", "", None))
    pruned = sum(t["state"] == "pruned" for t in found)
    section.notes.append(
        f"Cost: `search=asha` as it comes (TPE sampler, ASHA pruner), `{LR_SPACE}`, {trials} trials of 2 epochs of "
        f"`debug=fast` ({pruned} pruned), `launcher=local`, one torch thread, run by "
        "`python -m benchmarks.probes.search_clock` (tipi's command line with timers wrapped around each step); "
        "per trial, the first left out (it imports torch and the model's modules)."
    )
    return {"clock": clock, "outside_s": outside}


def run(quick: bool) -> Section:
    """All of section 9."""
    section = Section("9. Search: ASHA vs no pruning, workers vs batches, tipi's cost per trial")
    with tempfile.TemporaryDirectory(prefix="tipi-bench-search-") as tmp:
        work = Path(tmp)
        section.raw["pruning"] = measure_pruning(section, work, quick)
        section.raw["workers"] = measure_workers(section, work, quick)
        section.raw["cost"] = measure_cost(section, work, quick)
    return section
