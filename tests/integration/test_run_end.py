"""Every single run ends with its result: status, duration, objective, final metrics, best epoch, where, what next."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import RunTipi, read_json, run_dirs, tipi_env
from tests.integration.slurm_helpers import misbehave_config_dir
from tests.integration.test_progress_cli import SEG, run_in_pty, screen_lines, terminal_env, tipi_command
from tests.reliability.conftest import INTERRUPTIBLE, train_lines, wait_until

FAST = ("debug=fast", "model=unet_small", "processes.train.epochs=2")


def _block(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    [start] = [i for i, line in enumerate(lines) if line.startswith("run ")]
    return lines[start:]


def test_a_run_piped_to_a_file_ends_with_one_plain_block(run_tipi: RunTipi, tmp_path: Path) -> None:
    proc = run_tipi(*FAST, check=True)
    [run] = run_dirs(tmp_path / "outputs")
    shown = str(run.relative_to(tmp_path))
    record = read_json(run / "run.json")
    block = _block(proc.stdout)
    assert block[0].startswith("run succeeded in ") and block[0].endswith(f" s: {shown}"), block
    assert f"objective: test/mean_iou = {record['objective']:.4g}" in block
    assert any(line.startswith("best epoch: ") and "(val/mean_iou " in line for line in block), block
    assert any(line.startswith("test: pixel_acc ") and " mean_iou " in line for line in block), block
    assert block[-1] == f"inspect: tipi-runs show {shown}"
    assert "\x1b[" not in proc.stdout, "plain text off a terminal"


def test_progress_none_keeps_the_result(run_tipi: RunTipi, tmp_path: Path) -> None:
    proc = run_tipi(*FAST, "progress=none", check=True)
    assert _block(proc.stdout)[0].startswith("run succeeded in ")


def test_a_failed_run_ends_with_its_error_and_the_resume_command(run_tipi: RunTipi, tmp_path: Path) -> None:
    conf = misbehave_config_dir(tmp_path)
    proc = run_tipi("--config-dir", str(conf), "+experiment=misbehave", "seed=2", "hydra.run.dir=run")
    assert proc.returncode == 1
    block = _block(proc.stdout)
    assert block[0].startswith("run failed in ") and block[0].endswith(": run"), block
    assert any(line.startswith("error: ") for line in block), block
    assert block[-1] == "resume: python -m tipi resume=run"


def test_an_interrupted_run_ends_with_the_resume_command(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "tipi", *INTERRUPTIBLE, "hydra.run.dir=run"], cwd=tmp_path,
                            env=tipi_env(OMP_NUM_THREADS="1"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_until(proc, lambda: train_lines(run) >= 2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    block = _block(out)
    assert block[0].startswith("run interrupted in "), block
    assert block[-1] == "resume: python -m tipi resume=run"


def test_a_terminal_gets_the_result_after_the_bars(tmp_path: Path) -> None:
    code, raw = run_in_pty(tipi_command(*SEG), tmp_path, terminal_env())
    lines = screen_lines(raw)
    assert code == 0, "\n".join(lines)
    ends = [i for i, line in enumerate(lines) if line.startswith("run succeeded in ")]
    assert ends, "\n".join(lines)
    after = lines[ends[-1]:]
    assert any(line.strip().startswith("objective: test/mean_iou = ") for line in after), after
    assert any(line.strip().startswith("inspect: tipi-runs show outputs/") for line in after), after


def test_plain_progress_of_a_resumed_run_counts_epochs_as_its_log_does(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = tipi_env(OMP_NUM_THREADS="1")
    first = subprocess.Popen([sys.executable, "-m", "tipi", *INTERRUPTIBLE, "hydra.run.dir=run"], cwd=tmp_path,
                             env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    wait_until(first, lambda: train_lines(run) >= 2)
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
    resumed = subprocess.run([sys.executable, "-m", "tipi", "resume=run", "progress=plain",
                              "progress.plain_interval_s=0"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=240, stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stderr
    text = resumed.stdout + resumed.stderr
    [logged] = re.findall(r"resuming in epoch (\d+)/(\d+) at step \d+/\d+", text)
    assert logged == ("1", "2"), text
    bars = re.findall(r"overall/epoch/batches \d+/\d+ \d+% elapsed \S+(?: eta \S+)?(?: done)? epoch (\d+)/(\d+)", text)
    assert bars and bars[0] == logged, text  # the first batch line names the epoch the log named
    assert not re.search(r"\bdone done\b", text), text
    assert not re.search(r"^overall \d+/\d+ \d+% elapsed \S+ eta", text, re.MULTILINE), "no ETA on the top bar"
