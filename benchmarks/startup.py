"""1. Start-up: ``--help``, ``--cfg job`` and Hydra-detected errors against a bare Hydra app, and the
time to the first training step against a plain script; plus checks that no torch is imported on
the paths that need none."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from benchmarks import BENCH_DIR, REPO
from benchmarks.report import Row, Section
from benchmarks.seg import seg_setup
from benchmarks.stats import Timed, check, child_env, interleave, python, run_timed, summarize

BARE_APP = BENCH_DIR / "baselines" / "bare_hydra_app.py"
PLAIN_TRAIN = BENCH_DIR / "baselines" / "plain_train.py"
TIMED_TRAIN = "benchmarks.probes.timed_train.TimedTrainingProcess"

# (what, tipi's arguments, the bare app's arguments, expected exit codes)
LIGHT_PATHS: list[tuple[str, list[str], list[str], tuple[int, ...]]] = [
    ("`--help`", ["--help"], ["--help"], (0,)),
    ("`+experiment=seg --cfg job`", ["+experiment=seg", "--cfg", "job"], ["experiment=seg", "--cfg", "job"], (0,)),
    ("unknown option (`--bogus`)", ["--bogus"], ["--bogus"], (2,)),
    ("bad override (`model=unett`)", ["model=unett"], ["model=unett"], (1,)),
    ("misspelt parameter (`processes.train.epocs=1`)", ["processes.train.epocs=1"], ["processes.train.epocs=1"], (1,)),
]
RATIO_GOAL = 1.2
FIRST_STEP_GOAL_S = 0.35
_TORCH_IMPORT = re.compile(r"^import time:\s+\d+\s+\|\s+\d+\s+\|\s*torch(\.|\s*$)", re.MULTILINE)


def tipi_cmd(*args: str) -> list[str]:
    """``python -m tipi ARGS``."""
    return [python(), "-m", "tipi", *args]


def bare_cmd(*args: str) -> list[str]:
    """The bare Hydra app with ``ARGS``."""
    return [python(), str(BARE_APP), *args]


def bare_env() -> dict[str, str]:
    """The bare app's environment: the probes on the path (its job clock is ``job_clock.JobClock``).

    The repository is not added to the path for it; Hydra plugins installed in
    the environment (tipi's own ``hydra_plugins.tipi_launcher`` among them, once
    tipi is installed) are scanned by every Hydra app, the bare one included.
    """
    env = child_env(pythonpath=[BENCH_DIR / "probes"])
    parts = [p for p in env["PYTHONPATH"].split(os.pathsep) if p and Path(p).resolve() != REPO]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def imports_torch(cmd: list[str], cwd: Path) -> bool:
    """True when running ``cmd`` (a ``python ...`` command) imports any ``torch`` module."""
    timed = run_timed([cmd[0], "-X", "importtime", *cmd[1:]], cwd)
    return bool(_TORCH_IMPORT.search(timed.stderr))


def _ratio_row(what: str, tipi_s: list[float], bare_s: list[float]) -> Row:
    tipi, bare = summarize(tipi_s), summarize(bare_s)
    pairs = sorted(a / b for a, b in zip(tipi_s, bare_s, strict=True))
    ratio = tipi.median / bare.median
    return Row(what, tipi, bare, f"{ratio:.2f}× (pairs {pairs[0]:.2f}–{pairs[-1]:.2f})",
               f"≤ {RATIO_GOAL}× bare Hydra", ratio <= RATIO_GOAL, ratio)


def measure_light_paths(section: Section, work: Path, repeats: int) -> None:
    """``--help``, ``--cfg job`` and two Hydra-detected errors: tipi against the bare app."""
    for what, tipi_args, bare_args, codes in LIGHT_PATHS:
        def a(args: list[str] = tipi_args, codes: tuple[int, ...] = codes, what: str = what) -> float:
            return check(run_timed(tipi_cmd(*args), work), f"tipi {what}", codes).seconds

        def b(args: list[str] = bare_args, codes: tuple[int, ...] = codes, what: str = what) -> float:
            return check(run_timed(bare_cmd(*args), work, env=bare_env()), f"bare Hydra {what}", codes).seconds

        tipi_s, bare_s = interleave(a, b, repeats)
        section.raw[what] = {"tipi_s": tipi_s, "bare_s": bare_s}
        section.rows.append(_ratio_row(what, tipi_s, bare_s))
    heavy = [what for what, args, _, _ in LIGHT_PATHS if imports_torch(tipi_cmd(*args), work)]
    section.raw["imports_torch"] = heavy
    section.rows.append(Row("torch imported on the paths above", ", ".join(heavy) or "none", "", "",
                            "none", not heavy))


def _first_step_times(timed: Timed, marker: Path, what: str) -> dict[str, float]:
    """Seconds from launch to the start and to the end of the first training step."""
    check(timed, what)
    if not marker.exists():
        raise RuntimeError(f"{what}: no first-step marker written\n{timed.stderr[-2000:]}")
    times = json.loads(marker.read_text())
    return {k: times[f"first_step_{k}"] - timed.started for k in ("start", "end")}


def measure_first_step(section: Section, work: Path, repeats: int, warmup: int = 1) -> None:
    """Launch to the first optimizer step: ``+experiment=seg`` against the plain script.

    Judged at the start of the step (its forward): the step itself is the same
    work on both sides, and the first one is slow and varies by seconds (kernels
    are set up on first use), which would drown the difference.
    """
    setup = json.dumps(seg_setup())
    counter = iter(range(10_000))

    def a() -> dict[str, float]:
        i = next(counter)
        marker = work / f"tipi-first-{i}.json"
        timed = run_timed(tipi_cmd("+experiment=seg", f"hydra.run.dir={work / f'first-{i}'}",
                                   f"processes.train._target_={TIMED_TRAIN}",
                                   f"+processes.train.report_to={marker}", "+processes.train.stop_after_steps=1"),
                          work)
        return _first_step_times(timed, marker, "tipi +experiment=seg (first step)")

    def b() -> dict[str, float]:
        marker = work / f"plain-first-{next(counter)}.json"
        timed = run_timed([python(), str(PLAIN_TRAIN), "--setup", setup, "--first-step", str(marker)], work)
        return _first_step_times(timed, marker, "plain script (first step)")

    tipi_runs, plain_runs = interleave(a, b, repeats, warmup)
    section.raw["first_step"] = {"tipi_s": tipi_runs, "plain_s": plain_runs}
    for key, what, goal in (("start", "launch to the start of the first training step, `+experiment=seg`", True),
                            ("end", "launch to the end of the first training step", False)):
        tipi_s, plain_s = [r[key] for r in tipi_runs], [r[key] for r in plain_runs]
        tipi, plain = summarize(tipi_s), summarize(plain_s)
        diff = tipi.median - plain.median
        pairs = sorted(x - y for x, y in zip(tipi_s, plain_s, strict=True))
        section.rows.append(Row(what, tipi, plain, f"{diff:+.2f} s (pairs {pairs[0]:+.2f}–{pairs[-1]:+.2f})",
                                f"≤ plain + {FIRST_STEP_GOAL_S} s" if goal else "",
                                diff <= FIRST_STEP_GOAL_S if goal else None, diff))


def measure_torch_floor(section: Section, work: Path, repeats: int) -> None:
    """Context: what ``import torch``, and building an optimizer (which imports ``torch._dynamo``), cost."""
    snippets = {
        "`import torch`": "import torch",
        "`import torch` + build `torch.optim.Adam`":
            "import torch; torch.optim.Adam([torch.zeros(1, requires_grad=True)])",
    }
    for what, code in snippets.items():
        times = [check(run_timed([python(), "-c", code], work), what).seconds for _ in range(repeats)]
        section.raw[what] = times
        section.rows.append(Row(f"context: {what}", "", summarize(times), "", "", None))


def run(quick: bool) -> Section:
    """All of section 1."""
    section = Section("1. Start-up")
    with tempfile.TemporaryDirectory(prefix="tipi-bench-startup-") as tmp:
        work = Path(tmp)
        measure_light_paths(section, work, 3 if quick else 12)
        # The light paths above already compiled tipi's and Hydra's .pyc files: no warm-up in quick mode.
        measure_first_step(section, work, 4 if quick else 6, warmup=0 if quick else 1)
        measure_torch_floor(section, work, 1 if quick else 4)
    section.notes += [
        "Wall time from launch to exit; for the first step, to the first training forward (and to the end of "
        "the first optimizer step), read by hooks on tipi's unmodified TrainingProcess and on the plain "
        "script's model and optimizer. The goal is judged at the start of the step: the first step itself is "
        "the same work on both sides and varies by seconds.",
        "The bare app composes tipi's own config tree with the same defaults list (benchmarks/baselines/).",
    ]
    return section
