"""A run directory belongs to one run: runs started together never share one; resume only when asked."""

from __future__ import annotations

import hashlib
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import RunTipi, read_json, run_dirs, tipi_env
from tests.integration.slurm_helpers import slurm_cluster  # noqa: F401 - a fixture

FAST = ("debug=fast", "model=unet_small", "progress=none")
# Only the data-load step: what happens around a run, not in it.
LOAD_ONLY = ("scheduler=none", "~processes.train", "~processes.validate", "~processes.test", "~processes.result")

# Starts ``python -m tipi`` with the given arguments at a real barrier: each process imports tipi and
# Hydra, says it is ready on one pipe, then blocks reading another; the test closes that pipe once every
# process is ready, which releases all of them in the same instant (a slow start delays the release, it
# does not make one process late).
BARRIER = """
import os, sys, runpy
import tipi.cli, hydra  # the slow part, before the barrier
ready, go = int(sys.argv[1]), int(sys.argv[2])
os.write(ready, b"r")
os.close(ready)
os.read(go, 1)  # returns when the test closes the pipe's other end
os.close(go)
sys.argv = ["tipi", *sys.argv[3:]]
runpy.run_module("tipi", run_name="__main__")
"""


def start_together(cwd: Path, runs: list[list[str]], ready_s: float = 120) -> list[subprocess.CompletedProcess[str]]:
    """Start one ``python -m tipi`` per argument list, release them together once all are ready; wait for all."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    procs = [subprocess.Popen([sys.executable, "-c", BARRIER, str(ready_w), str(go_r), *args], cwd=cwd,
                              env=tipi_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, pass_fds=(ready_w, go_r)) for args in runs]
    os.close(ready_w)
    os.close(go_r)
    ready, deadline = 0, time.monotonic() + ready_s
    with selectors.DefaultSelector() as waiting:
        waiting.register(ready_r, selectors.EVENT_READ)
        while ready < len(runs) and time.monotonic() < deadline:
            if waiting.select(timeout=1.0):
                chunk = os.read(ready_r, 64)
                if not chunk:  # every process closed its end: one died before it was ready
                    break
                ready += len(chunk)
    os.close(ready_r)
    os.close(go_w)  # the release: every process's read returns now
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    assert ready == len(runs), f"{ready} of {len(runs)} processes got ready\n" + "\n".join(p.stderr for p in done)
    return done


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_eight_runs_started_in_the_same_instant_get_eight_directories(tmp_path: Path) -> None:
    # One default name for all eight (Hydra's is per second): the claim, not the clock, must keep them apart.
    same_name = "hydra.run.dir='${tipi_run_dir:${resume},outputs/same}'"
    procs = start_together(tmp_path, [[*FAST, *LOAD_ONLY, f"seed={seed}", same_name] for seed in range(8)])
    for proc in procs:
        assert proc.returncode == 0, proc.stderr
    dirs = run_dirs(tmp_path / "outputs")
    assert sorted(d.name for d in dirs) == ["same", *(f"same_{i}" for i in range(1, 8))]
    seeds = set()
    for run in dirs:
        record = read_json(run / "run.json")
        assert record["status"] == "succeeded"
        assert len(record["attempts"]) == 1
        config_seed = int((run / ".hydra" / "config.yaml").read_text().split("\nseed: ")[1].split()[0])
        assert record["seed"] == config_seed
        seeds.add(config_seed)
    assert seeds == set(range(8))


@pytest.mark.slow
def test_three_multiruns_started_together_get_three_sweep_directories(tmp_path: Path) -> None:
    same_name = "hydra.sweep.dir=${tipi_fresh_dir:multirun/same}"
    procs = start_together(tmp_path, [["-m", *FAST, *LOAD_ONLY, f"seed={10 * i},{10 * i + 1}", same_name]
                                      for i in range(3)])
    for proc in procs:
        assert proc.returncode == 0, proc.stderr
    sweeps = sorted(p.name for p in (tmp_path / "multirun").iterdir())
    assert sweeps == ["same", "same_1", "same_2"]
    seeds_by_sweep = []
    for name in sweeps:
        jobs = run_dirs(tmp_path / "multirun" / name)
        assert len(jobs) == 2
        assert all(read_json(job / "run.json")["status"] == "succeeded" for job in jobs)
        seeds_by_sweep.append(sorted(read_json(job / "run.json")["seed"] for job in jobs))
    assert sorted(seeds_by_sweep) == [[0, 1], [10, 11], [20, 21]]


def test_a_fresh_run_pointed_at_another_runs_directory_is_refused_and_changes_nothing(
        run_tipi: RunTipi, tmp_path: Path) -> None:
    run_tipi(*FAST, *LOAD_ONLY, "hydra.run.dir=taken", check=True)
    taken = tmp_path / "taken"
    before = hashes(taken)
    proc = run_tipi(*FAST, *LOAD_ONLY, "seed=5", "hydra.run.dir=taken")
    assert proc.returncode == 1
    assert f"Error hydra.run.dir: '{taken}' holds another run (started " in proc.stderr
    assert "status succeeded, overrides: debug=fast" in proc.stderr
    assert f"resume={taken}" in proc.stderr and "another directory" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert hashes(taken) == before
    # resume= still continues it (nothing left to do: every process is skipped or quick)
    run_tipi(f"resume={taken}", check=True)
    assert len(read_json(taken / "run.json")["attempts"]) == 2


def test_the_same_command_in_the_same_directory_continues_its_own_run(run_tipi: RunTipi, tmp_path: Path) -> None:
    run_tipi(*FAST, *LOAD_ONLY, "hydra.run.dir=mine", check=True)
    run_tipi(*FAST, *LOAD_ONLY, "hydra.run.dir=mine", check=True)
    assert len(read_json(tmp_path / "mine" / "run.json")["attempts"]) == 2


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.usefixtures("slurm_cluster")
def test_a_slurm_job_array_of_single_runs_gives_one_directory_per_task(tmp_path: Path) -> None:
    script = tmp_path / "array.sh"
    args = " ".join([*FAST, *LOAD_ONLY])
    script.write_text(f"#!/bin/bash\ncd {tmp_path}\nexec {sys.executable} -m tipi {args} seed=$SLURM_ARRAY_TASK_ID\n")
    done = subprocess.run(["sbatch", "--parsable", "--wait", "--array=0-3", "--cpus-per-task=1", "--mem=2G",
                           f"--output={tmp_path}/slurm-%A_%a.out", str(script)],
                          env=tipi_env(), capture_output=True, text=True, timeout=600)
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("slurm-*.out")))
    assert done.returncode == 0, done.stderr + logs
    dirs = run_dirs(tmp_path / "outputs")
    records = [read_json(d / "run.json") for d in dirs]
    assert len(dirs) == 4, logs
    assert sorted(r["seed"] for r in records) == [0, 1, 2, 3]
    assert all(r["status"] == "succeeded" and len(r["attempts"]) == 1 for r in records)
    assert sorted(r["slurm"]["slurm_array_task_id"] for r in records) == ["0", "1", "2", "3"]
