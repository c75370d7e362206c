"""5. SLURM: submit-to-summary time of a 4-job sweep against a bare Hydra app's 4-job submitit sweep.

Runs only where a cluster answers (``sinfo``) and tipi has ``launcher=slurm``.
Both sweeps run trivial jobs (``experiment=bench_noop``) with the same
submitit resources; the time is launch to exit of the command, which for tipi
includes writing ``summary.csv``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from benchmarks.multirun import SEARCH_PATH
from benchmarks.report import Row, Section
from benchmarks.startup import bare_cmd, bare_env, tipi_cmd
from benchmarks.stats import check, interleave, run_timed, summarize

JOBS = 4
RESOURCES = ["hydra.launcher.timeout_min=10", "hydra.launcher.mem_gb=1", "hydra.launcher.cpus_per_task=1"]


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


def run(quick: bool) -> Section:
    """All of section 5 (not in ``--quick`` mode: a queue's latency does not fit in its time budget)."""
    section = Section(f"5. SLURM: submit to summary, {JOBS}-job sweep")
    reason = "not in --quick mode (`python -m benchmarks --only slurm` runs it)" if quick else unavailable()
    if reason:
        section.skipped = reason
        return section
    repeats = 3
    sweep = f"seed=range(0,{JOBS})"
    counter = iter(range(10_000))
    with tempfile.TemporaryDirectory(prefix="tipi-bench-slurm-", dir=Path.home()) as tmp:
        work = Path(tmp)  # under $HOME: the jobs must see it, like a shared filesystem on a real cluster

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
            return check(run_timed(bare_cmd("-m", "experiment=bench_noop", "hydra/launcher=submitit_slurm",
                                            SEARCH_PATH, sweep, f"hydra.sweep.dir={sweep_dir}", *RESOURCES),
                                   work, env=bare_env(), timeout=900), "bare Hydra SLURM sweep").seconds

        tipi_s, bare_s = interleave(a, b, repeats, warmup=0)
    t, b_ = summarize(tipi_s), summarize(bare_s)
    section.rows.append(Row(f"launch to exit of a {JOBS}-job sweep (tipi: to summary.csv)", t, b_,
                            f"{t.median - b_.median:+.1f} s ({t.median / b_.median:.2f}×)", "", None))
    section.raw = {"tipi_s": tipi_s, "bare_s": bare_s}
    section.notes.append(f"{repeats} sweep(s) a side on the local cluster, `experiment=bench_noop {sweep}` with "
                         f"{' '.join(RESOURCES)}; no goal was set for this figure.")
    return section
