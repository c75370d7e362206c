"""Nothing lost, nothing silent: a run directory has one owner, and resuming never drops its record.

Real ``python -m tipi`` processes: a run that holds its directory while it
trains (hung mid-checkpoint by ``tests.reliability.faults``, so it is
certainly still running), second processes that try to write there, a
SIGKILL, and resumes of damaged, finished and unchanged runs.
"""

from __future__ import annotations

import hashlib
import re
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from tests.conftest import RunTipi, read_json
from tests.reliability.conftest import (
    INTERRUPTIBLE,
    load_checkpoint,
    records,
    same_weights,
    start_tipi,
    wait_until,
)
from tipi.runs.scan import read_run

FAST = ("debug=fast", "model=unet_small", "progress=none")  # the finished_run fixture's command


def digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_running_run_is_refused_to_a_second_process_and_resumes_once_killed(
        run_tipi: RunTipi, tmp_path: Path, uninterrupted: Path) -> None:
    """A run that is training holds its directory: ``resume=``, the same command again and another
    fresh run are refused, naming its pid, host and start, before they write a byte of its record,
    metrics or checkpoints; SIGKILLed, it releases the directory and ``resume=`` finishes it."""
    run = tmp_path / "run"
    # the 5th write of last.pt (step 4's) hangs half-way: the owner is mid-training until it is killed
    owner = start_tipi(*INTERRUPTIBLE, "hydra.run.dir=run", cwd=tmp_path, fault=("hang-in-save", 5))
    wait_until(owner, lambda: (run / "HUNG").exists())
    record = read_json(run / "run.json")
    mine = {name: digest(run / name) for name in ("run.json", "metrics.jsonl", ".hydra/config.yaml",
                                                 ".hydra/overrides.yaml", "checkpoints/last.pt")}
    running = f"'{run}' is running in pid {owner.pid} on host {socket.gethostname()} since "

    resumed = run_tipi(f"resume={run}", "processes.train.epochs=3")
    assert resumed.returncode == 1, resumed.stderr
    assert f"Error resume: {running}" in resumed.stderr and "; wait, or stop it first" in resumed.stderr
    assert f"`kill {owner.pid}` stops it after the current step" in resumed.stderr
    assert "Traceback" not in resumed.stderr
    for again in ([*INTERRUPTIBLE, "hydra.run.dir=run"], [*INTERRUPTIBLE, "seed=5", "hydra.run.dir=run"]):
        proc = run_tipi(*again)
        assert proc.returncode == 1, proc.stderr
        assert f"Error hydra.run.dir: {running}" in proc.stderr and "; wait, or stop it first" in proc.stderr
        assert "resume=" not in proc.stderr, "a running run is not to be resumed"
        assert "Traceback" not in proc.stderr
    assert {name: digest(run / name) for name in mine} == mine, "the owner's files are untouched"
    assert read_json(run / "run.json") == record and record["pid"] == owner.pid and record["status"] == "running"
    steps = [r["step"] for r in records(run) if "train/loss" in r]
    assert steps == sorted(set(steps)), "one writer: metrics in order"

    owner.kill()  # SIGKILL: the kernel releases the lock
    owner.communicate(timeout=60)
    assert owner.returncode == -signal.SIGKILL
    run_tipi(f"resume={run}", check=True)
    record = read_json(run / "run.json")
    assert record["status"] == "succeeded" and [a["status"] for a in record["attempts"]] == ["running", "succeeded"]
    assert record["objective"] is not None
    assert same_weights(load_checkpoint(run / "checkpoints" / "last.pt")["model"],
                        load_checkpoint(uninterrupted / "checkpoints" / "last.pt")["model"])
    assert (run / ".tipi.lock").read_bytes() == b"", "the lock file stays, empty"


def test_a_half_written_run_json_is_kept_aside_and_the_record_rebuilt(
        run_tipi: RunTipi, copy_run: Callable[[str], Path]) -> None:
    """``resume=`` a run whose run.json was cut in half: the half is kept under another name, the
    record is rebuilt from ``.hydra/`` and metrics.jsonl (start, metrics, objective, an earlier
    attempt), and one line says so; a fresh run of another command is refused there."""
    run = copy_run("run")
    original = read_json(run / "run.json")
    whole = (run / "run.json").read_bytes()
    half = whole[: len(whole) // 2]
    (run / "run.json").write_bytes(half)

    other = run_tipi(*FAST, "seed=5", f"hydra.run.dir={run}")
    assert other.returncode == 1 and f"Error hydra.run.dir: '{run}' holds another run" in other.stderr
    assert "run.json is unreadable" in other.stderr and (run / "run.json").read_bytes() == half

    proc = run_tipi(f"resume={run}", check=True)
    [aside] = run.glob("run.json.unreadable-*")
    assert aside.read_bytes() == half, "kept, byte for byte"
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if "run.json was unreadable" in line]
    assert len(lines) == 1, proc.stdout + proc.stderr
    assert re.search(rf"run\.json was unreadable \({len(half)} bytes, not valid JSON from byte \d+\); kept as "
                     rf"{re.escape(aside.name)}, rebuilt from \.hydra/ and metrics\.jsonl: started ", lines[0])
    assert lines[0].endswith(f"1 earlier attempt(s), objective {original['objective']:.6g}")
    record = read_json(run / "run.json")
    assert record["status"] == "succeeded"
    assert record["objective"] == original["objective"] and record["metrics"] == original["metrics"]
    assert record["started"] <= original["started"], "the start is the run's first, not this attempt's"
    assert record["overrides"] == original["overrides"] and record["seed"] == original["seed"]
    assert [a["status"] for a in record["attempts"]] == ["lost", "succeeded"]
    assert record["rebuilt"]["unreadable"] == aside.name
    assert read_run(run)["objective"] == original["objective"], "tipi-runs shows it"


def test_resuming_a_finished_run_keeps_its_record(run_tipi: RunTipi, copy_run: Callable[[str], Path]) -> None:
    """Every step is done: the resume runs nothing and run.json keeps its objective, metrics,
    timings and provenance, with one more attempt that says so."""
    run = copy_run("run")
    before = read_json(run / "run.json")
    assert before["objective"] is not None
    proc = run_tipi(f"resume={run}", check=True)
    assert "nothing left to run: every step was done; run.json keeps its record" in proc.stdout + proc.stderr
    after = read_json(run / "run.json")
    assert {k: v for k, v in after.items() if k != "attempts"} == {k: v for k, v in before.items() if k != "attempts"}
    assert after["attempts"][:-1] == before["attempts"]
    assert after["attempts"][-1]["status"] == "succeeded"
    assert after["attempts"][-1]["reason"] == "nothing left to run"
    assert read_run(run)["objective"] == before["objective"], "tipi-runs shows it"


def test_resuming_with_the_original_command_continues_the_run(run_tipi: RunTipi, tmp_path: Path) -> None:
    """``+experiment=seg debug=fast seed=7 resume=<dir>`` (and ``model=unet`` on a ``model=unet``
    run) is the run as it was: accepted; real changes are refused in one message naming each,
    with the run's value and the command's, and leave run.json as it was."""
    original = ("+experiment=seg", "debug=fast", "seed=7", "progress=none")
    run_tipi(*original, "hydra.run.dir=seg", check=True)
    run = tmp_path / "seg"
    proc = run_tipi(*original, "model=unet", f"resume={run}", check=True)
    assert "cannot be changed" not in proc.stderr
    record = read_json(run / "run.json")
    assert record["status"] == "succeeded" and len(record["attempts"]) == 2
    assert "overrides" not in record["attempts"][-1], "nothing changed, nothing recorded as changed"

    before = (run / "run.json").read_bytes()
    refused = run_tipi("+experiment=seg", "model=unet_small", "seed=8", "debug=overfit", f"resume={run}")
    assert refused.returncode == 1
    assert ("Error model, seed, debug: cannot be changed when resuming: the run was started with model=unet, "
            "seed=7, debug=fast; this command sets model=unet_small, seed=8, debug=overfit") in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (run / "run.json").read_bytes() == before
