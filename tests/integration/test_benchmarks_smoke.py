"""Smoke test of the benchmark harness (``benchmarks/``): its pieces import and return numbers.

Nothing here is timed against a goal; the whole file takes a few seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from omegaconf import OmegaConf

from benchmarks import BENCH_DIR, REPO
from benchmarks.docs_page import render
from benchmarks.multirun import SEARCH_PATH, analyse
from benchmarks.probes.step_clock import StepClock
from benchmarks.report import Row, Section, markdown
from benchmarks.run import _sections
from benchmarks.search import batch_busy, busy_fraction, epochs_to_reach, replay_asha
from benchmarks.startup import bare_cmd
from benchmarks.stats import Stats, child_env, interleave, run_timed, summarize
from tests.conftest import tipi_env


def test_every_section_is_registered() -> None:
    assert list(_sections()) == ["startup", "steps", "multirun", "memory", "slurm", "ddp", "trackers", "pool",
                                 "search"]


def test_interleave_alternates_after_warmup_and_summarize_reports_median_and_range() -> None:
    calls: list[str] = []
    a, b = interleave(lambda: calls.append("a") or 1.0, lambda: calls.append("b") or 2.0, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert (a, b) == ([1.0] * 3, [2.0] * 3)
    stats = summarize([0.003, 0.001, 0.002], unit="ms", scale=1e3)
    assert (stats.median, stats.min, stats.max, stats.n) == (2.0, 1.0, 3.0, 3)
    assert stats.fmt() == "2 ms [1–3] n=3"


def test_a_timed_subprocess_returns_its_wall_time(tmp_path: Path) -> None:
    timed = run_timed([sys.executable, "-c", "print('hi')"], tmp_path, env=child_env())
    assert timed.returncode == 0 and timed.stdout.strip() == "hi"
    assert 0 < timed.seconds < 30


def test_step_clock_splits_each_period_into_fetch_compute_and_other() -> None:
    clock = StepClock()
    model = SimpleNamespace(training=True)
    for _batch in clock.timed(range(4)):
        clock.on_forward(model, ())
        clock.on_step_end(None, (), {})
    model.training = False
    clock.on_forward(model, ())  # evaluation forwards are not training steps
    steps = clock.breakdown()
    assert clock.steps == 4 and len(steps["period"]) == 3
    for period, fetch, compute, other in zip(*(steps[k] for k in ("period", "fetch", "compute", "other")),
                                             strict=True):
        assert abs(period - (fetch + compute + other)) < 1e-9
        assert min(period, fetch, compute) >= 0


def test_multirun_analysis_turns_a_job_clock_into_per_job_figures() -> None:
    clock = {"multirun_start": 0.0, "job_start": [1.0, 3.1, 3.2, 3.3], "job_end": [3.0, 3.15, 3.25, 3.35]}
    result = analyse(clock, jobs=4)
    assert result["validate_per_job"] == 0.25
    assert abs(result["cycle"] - 0.1) < 1e-9
    assert abs(result["per_job"] - 0.35) < 1e-9
    assert abs(result["first_job_body"] - 2.0) < 1e-9


def test_search_figures_count_epochs_to_the_target_and_busy_time() -> None:
    def trial(number: int, state: str, value: float | None, curve: list[float], start: float, end: float) -> dict:
        return {"number": number, "state": state, "value": value, "epochs": len(curve), "curve": curve,
                "start": start, "end": end, "params": {"lr": number}, "worker": number % 2}

    trials = [trial(0, "complete", 0.5, [0.1, 0.3, 0.5], 0.0, 3.0), trial(1, "pruned", None, [0.05], 0.0, 1.0),
              trial(2, "complete", 0.8, [0.2, 0.6, 0.8], 1.0, 4.0)]
    assert epochs_to_reach(trials, 0.45) == 3 and epochs_to_reach(trials, 0.75) == 7
    assert epochs_to_reach(trials, 0.9) == float("inf")
    assert busy_fraction(trials, workers=2, drain=True) == 7.0 / 8.0
    assert busy_fraction(trials, workers=2) == 1.0  # to the last start: both workers busy throughout
    assert batch_busy([3.0, 1.0, 3.0], size=2, drain=True) == 7.0 / 12.0
    assert batch_busy([3.0, 1.0, 3.0], size=2) == 4.0 / 6.0  # to the last batch's start
    unpruned = [trial(i, "complete", 0.1 * i, [0.1 * i] * 3, 0.0, 1.0) for i in range(4, 0, -1)]
    replayed = replay_asha(unpruned)  # the first trial at a rung goes on; a worse one later is stopped there
    assert [(t["state"], t["epochs"]) for t in replayed] == [("complete", 3), ("pruned", 1), ("pruned", 1),
                                                             ("pruned", 1)]


def test_the_table_marks_each_goal_met_or_missed() -> None:
    section = Section("demo", rows=[
        Row("fast", Stats(1.0, 0.9, 1.1, 3), Stats(1.0, 0.9, 1.2, 3), "1.00×", "≤ 1.2×", True),
        Row("slow", "2 s", "1 s", "2×", "≤ 1.2×", False),
        Row("context", "3 s"),
    ])
    header = {"command": "python -m benchmarks", "date": "today", "machine": {"cpu": "x", "cores": 2},
              "mode": "quick", "seconds": 1.0}
    text = markdown([section], header)
    assert "Goals met: 1 of 2." in text
    assert "| fast | 1 s [0.9–1.1] n=3 | 1 s [0.9–1.2] n=3 | 1.00× | ≤ 1.2× | met |" in text
    assert "| slow | 2 s | 1 s | 2× | ≤ 1.2× | **missed** |" in text


def test_the_docs_page_puts_the_table_under_its_own_heading() -> None:
    page = render("Goals met: 1 of 2.\n\n### 1. Start-up\n\n| what |\n")
    assert page.startswith("# Performance")
    assert page.index("## Latest full run") < page.index("#### 1. Start-up")


def _app_defaults(path: Path) -> list[object]:
    """A primary config's defaults list without Hydra's own choices (``override hydra/...``)."""
    entries = OmegaConf.to_container(OmegaConf.load(path).defaults)
    assert isinstance(entries, list)
    return [e for e in entries if not (isinstance(e, dict) and any(str(k).startswith("override hydra/") for k in e))]


def test_the_bare_hydra_app_mirrors_tipis_defaults_list() -> None:
    def groups(entries: list[object]) -> list[object]:  # the launcher's choice differs: see bare.yaml
        return [{"launcher": "?"} if isinstance(e, dict) and "launcher" in e else e for e in entries]

    tipi = _app_defaults(REPO / "conf" / "config.yaml")
    assert tipi, "tipi's defaults list is empty?"
    assert groups(_app_defaults(BENCH_DIR / "baselines" / "conf" / "bare.yaml")) == groups(tipi)


def test_the_bare_hydra_app_composes_tipis_tree_with_the_noop_experiment(tmp_path: Path) -> None:
    proc = subprocess.run(bare_cmd("experiment=bench_noop", SEARCH_PATH, "--cfg", "job"), cwd=tmp_path,
                          env=tipi_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "benchmarks.probes.noop.NoopProcess" in proc.stdout
    assert "data: null" in proc.stdout and "network: null" in proc.stdout
