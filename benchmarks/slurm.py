"""5. SLURM: a 4-job sweep from launch to summary against a bare Hydra + submitit app; a detached 50-job submit.

Runs only where a cluster answers (``sinfo``) and tipi has ``launcher=slurm``.

- Launch to summary: tipi's sweep of trivial jobs (``experiment=bench_noop``:
  the engine, no data, no network) against a bare ``@hydra.main`` app whose
  task imports torch and seeds it (``baselines/bare_torch_app.py``), as every
  tipi job does, with the same submitit resources; the time is launch to exit
  of the command, which for tipi includes writing ``summary.csv``. Goal ≤ 1.2×.
- Detached submit: ``launcher.wait=false`` with 50 jobs, launch to exit of the
  command (the jobs are cancelled right after). Goal ≤ 3 s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path

from benchmarks import BENCH_DIR
from benchmarks.multirun import SEARCH_PATH
from benchmarks.report import Row, Section
from benchmarks.startup import bare_env, tipi_cmd
from benchmarks.stats import check, interleave, python, run_timed, summarize

JOBS = 4
DETACHED_JOBS = 50
RATIO_GOAL = 1.2
DETACH_GOAL_S = 3.0
RESOURCES = ["hydra.launcher.timeout_min=10", "hydra.launcher.mem_gb=1", "hydra.launcher.cpus_per_task=1"]
BARE_TORCH_APP = BENCH_DIR / "baselines" / "bare_torch_app.py"


def unavailable() -> str | None:
    """Why this section cannot run here, or None when it can."""
    if not resources.files("tipi.conf").joinpath("launcher", "slurm.yaml").is_file():
        return "tipi's config tree has no launcher=slurm"
    if shutil.which("sinfo") is None:
        return "no SLURM client (sinfo) on this machine"
    try:
        probe = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    if probe.returncode != 0 or "up" not in probe.stdout:
        return f"no SLURM partition is up (sinfo: {(probe.stderr or probe.stdout).strip()[:200]})"
    return None


def run(quick: bool, repeats: int = 3) -> Section:
    """All of section 5 (not in ``--quick`` mode: a queue's latency does not fit in its time budget)."""
    section = Section(f"5. SLURM: submit to summary, {JOBS}-job sweep; detached submit of {DETACHED_JOBS} jobs")
    reason = "not in --quick mode (`python -m benchmarks --only slurm` runs it)" if quick else unavailable()
    if reason:
        section.skipped = reason
        return section
    # cancelled jobs may still write their logs while the folder goes: leave what they wrote
    with tempfile.TemporaryDirectory(prefix="tipi-bench-slurm-", dir=Path.home(), ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)  # under $HOME: the jobs must see it, like a shared filesystem on a real cluster
        tipi_s, bare_s = sweep_to_summary(work, repeats)
        detached_s = detached_submit(work)
    t, b = summarize(tipi_s), summarize(bare_s)
    ratio = t.median / b.median
    section.rows.append(Row(f"launch to exit of a {JOBS}-job sweep (tipi: to summary.csv)", t, b,
                            f"{t.median - b.median:+.1f} s ({ratio:.2f}×)", f"≤ {RATIO_GOAL}×", ratio <= RATIO_GOAL))
    section.rows.append(Row(f"launcher.wait=false: submit {DETACHED_JOBS} jobs and return", summarize([detached_s]),
                            None, "", f"≤ {DETACH_GOAL_S:.0f} s", detached_s <= DETACH_GOAL_S))
    section.raw = {"tipi_s": tipi_s, "bare_s": bare_s, "detached_s": detached_s}
    section.notes.append(f"{repeats} sweep(s) a side on the local cluster, `experiment=bench_noop seed=range(0,{JOBS})`"
                         f" with {' '.join(RESOURCES)}; the baseline is a bare Hydra app with Hydra's submitit_slurm "
                         "launcher whose task imports torch and seeds it (baselines/bare_torch_app.py).")
    section.notes.append(f"The detached submit's {DETACHED_JOBS} jobs are cancelled (scancel) as soon as it returned.")
    return section


def sweep_to_summary(work: Path, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds from launch to exit of tipi's and the bare app's sweeps, interleaved."""
    sweep = f"seed=range(0,{JOBS})"
    counter = iter(range(10_000))

    def a() -> float:
        sweep_dir = work / f"tipi-{next(counter)}"
        timed = check(run_timed(tipi_cmd("-m", "experiment=bench_noop", "launcher=slurm", SEARCH_PATH, sweep,
                                         f"hydra.sweep.dir={sweep_dir}", *RESOURCES), work, timeout=900),
                      "tipi SLURM sweep")
        if not (sweep_dir / "summary.csv").is_file():
            raise RuntimeError(f"tipi SLURM sweep wrote no summary.csv\n{timed.stderr[-2000:]}")
        return timed.seconds

    def b() -> float:
        sweep_dir = work / f"bare-{next(counter)}"
        cmd = [python(), str(BARE_TORCH_APP), "-m", "experiment=bench_noop", "hydra/launcher=submitit_slurm",
               SEARCH_PATH, sweep, f"hydra.sweep.dir={sweep_dir}", *RESOURCES]
        return check(run_timed(cmd, work, env=bare_env(), timeout=900), "bare Hydra SLURM sweep").seconds

    return interleave(a, b, repeats, warmup=0)


def detached_submit(work: Path) -> float:
    """Seconds for ``launcher.wait=false`` to submit ``DETACHED_JOBS`` jobs and return; the jobs are cancelled."""
    sweep_dir = work / "detached"
    timed = run_timed(tipi_cmd("-m", "experiment=bench_noop", "launcher=slurm", "launcher.wait=false", SEARCH_PATH,
                               f"seed=range(0,{DETACHED_JOBS})", f"hydra.sweep.dir={sweep_dir}", *RESOURCES),
                      work, timeout=300)
    try:
        manifest = json.loads((sweep_dir / "manifest.json").read_text())
        arrays = sorted({job["job_ids"][-1].split("_")[0] for job in manifest["jobs"]})
        if arrays:
            subprocess.run(["scancel", *arrays], capture_output=True, timeout=60)
            queued = ["squeue", "--noheader", f"--jobs={','.join(arrays)}"]
            gone_by = time.monotonic() + 120  # the queue drained, so the next measurement has the cluster
            while time.monotonic() < gone_by and subprocess.run(queued, capture_output=True, text=True,
                                                                 timeout=60).stdout.strip():
                time.sleep(1.0)
    except (OSError, ValueError, KeyError):
        pass  # no manifest: the check below reports why
    check(timed, f"tipi detached submit of {DETACHED_JOBS} jobs")
    return timed.seconds
