"""Progress at the front door: plain lines in a log file, nested live bars in a terminal.

``python -m tipi`` runs in a subprocess, its output redirected to a file or
attached to a pseudo-terminal (``pty``), with the environment a user's terminal
has (no ``NO_COLOR``, a real ``TERM``), so what decides between the two is the
one thing that differs: whether stderr is a terminal. Two debug runs of the seg
pipeline and two of a process without torch work: about 1 minute on a shared
2-core machine under load.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from tests.conftest import read_json, read_jsonl, run_dirs, tipi_env
from tipi import pipeline_process
from tipi.helpers import logger, progress_bar

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
# A plain progress line: "<indent><bar path> <count> [<percent>] elapsed H:MM:SS ..."
PLAIN_LINE = re.compile(r"^\s*(\S+) \d+(?:/\d+)? (?:\d+% )?elapsed \d+:\d\d:\d\d\b")
PLAIN_INTERVAL_S = 10.0  # conf/progress/auto.yaml: plain_interval_s
LIVE_DISPLAY_ERRORS = ("Only one live display", "LiveError", "Traceback")
SEG = ("+experiment=seg", "debug=fast")
COLUMNS, ROWS = 160, 40


def terminal_env(**extra: str) -> dict[str, str]:
    """A user's terminal environment: colours allowed, a real TERM; nothing that forces or hides a display."""
    env = tipi_env(TERM="xterm-256color", COLUMNS=str(COLUMNS), LINES=str(ROWS), **extra)
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    return env


def run_in_pty(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> tuple[int, str]:
    """Run ``args`` with stdin, stdout and stderr on a pseudo-terminal; return the exit code and all it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)  # the child holds the terminal now: reading ends (EIO) when it closes it
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break  # exited and nothing left to read
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
            raise AssertionError(f"{args} did not finish in {timeout} s")
        return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", errors="replace")
    finally:
        os.close(master)
        with contextlib.suppress(OSError):
            proc.kill()


def screen_lines(raw: str) -> list[str]:
    """Every line the terminal was given, escape sequences removed."""
    return [line for line in re.split(r"\r\n|\r|\n", ANSI.sub("", raw)) if line.strip()]


def last_frame(raw: str) -> str:
    """The live display's final frame and what followed it (after the last cursor-up)."""
    return ANSI.sub("", re.split(r"\x1b\[\d*A", raw)[-1])


def tipi_command(*args: str) -> list[str]:
    """``python -m tipi ARGS`` with this interpreter."""
    return [sys.executable, "-m", "tipi", *args]


@pipeline_process
def three_levels(epochs: int = 2, phases: int = 2, steps: int = 3, pause_s: float = 0.02) -> int:
    """epoch > train-val > batch bars inside the executor's: the shape of a training process."""
    count = 0
    for _ in progress_bar(range(epochs), desc="epoch"):
        for _ in progress_bar(range(phases), desc="train-val"):
            for _ in progress_bar(range(steps), desc="batch"):
                time.sleep(pause_s)  # long enough for the live display to draw the innermost bar
                count += 1
        logger.log({"count": count})
    return count


# No data, model or device: the run costs an interpreter start and the bars.
THREE_LEVELS = ("~pipeline", "permanences.data=null", "permanences.network=null", "permanences.device=null",
                f"++processes={{nested: {{_target_: {__name__}.three_levels}}}}", "run.objective=null")


def test_a_log_file_gets_plain_lines_without_ansi_a_bounded_number_and_the_running_loss(tmp_path: Path) -> None:
    log_path = tmp_path / "log.txt"
    start = time.perf_counter()
    with log_path.open("w") as log:  # python -m tipi +experiment=seg debug=fast > log.txt 2>&1
        proc = subprocess.run(tipi_command(*SEG), cwd=tmp_path, env=terminal_env(), stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=240)
    elapsed = time.perf_counter() - start
    text = log_path.read_text()
    assert proc.returncode == 0, text
    assert "\x1b" not in text
    progress = [m.group(1) for m in map(PLAIN_LINE.match, text.splitlines()) if m]
    paths = set(progress)
    assert {"overall", "overall/epoch", "overall/epoch/batches", "cleanup"} <= paths
    # At most one line per bar every plain_interval_s, plus its "done" line: the count
    # follows the run time, never the number of batches.
    assert len(progress) <= len(paths) * (1 + math.ceil(elapsed / PLAIN_INTERVAL_S)), text
    assert re.search(r"^overall 5/5 100% elapsed \S+ done", text, re.MULTILINE)
    assert "data: train=64" in text  # log records are still there, between the bars' lines
    # The epoch bar ends with the last running training loss and validation metric, as Lightning's does.
    [run_dir] = run_dirs(tmp_path / "outputs")
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    loss = [row["train/loss"] for row in metrics if "train/loss" in row][-1]
    iou = [row["val/mean_iou"] for row in metrics if "val/mean_iou" in row][-1]
    shown = re.escape(f"loss {loss:.3g}  val/mean_iou {iou:.3g}")
    assert re.search(rf"^  overall/epoch (\d+)/\1 100% elapsed \S+ done {shown}$", text, re.MULTILINE), text


def test_a_terminal_gets_the_nested_live_bars(tmp_path: Path) -> None:
    # 20 redraws a second so that even a short debug run draws its inner bars.
    code, raw = run_in_pty(tipi_command(*SEG, "progress.refresh_per_second=20"), tmp_path, terminal_env())
    lines = screen_lines(raw)
    assert code == 0, "\n".join(lines)
    assert "\x1b[" in raw  # a live display, not plain lines
    assert not any(PLAIN_LINE.match(line) for line in lines)
    # Nested bars: each level indented under the one above.
    for pattern in (r"^overall\s", r"^  epoch\s", r"^    batches\s"):
        assert any(re.match(pattern, line) for line in lines), f"no {pattern!r} row in\n" + "\n".join(lines)
    # The epoch row shows the running training loss while it trains.
    assert any(re.match(r"^  epoch\s.*\sloss \d", line) for line in lines), "\n".join(lines)
    assert not any(error in raw for error in LIVE_DISPLAY_ERRORS)
    assert any("data: train=64" in line for line in lines)  # log records are written above the bars
    final = last_frame(raw)
    assert re.search(r"overall\s.*\s5/5\s", final), final
    assert re.search(r"cleanup\s.*\s(\d+)/\1\s", final), final
    [run_dir] = run_dirs(tmp_path / "outputs")
    assert read_json(run_dir / "run.json")["status"] == "succeeded"


def test_three_nested_levels_inside_the_executors_bars_in_a_terminal(tmp_path: Path) -> None:
    code, raw = run_in_pty(tipi_command(*THREE_LEVELS, "progress.refresh_per_second=20"), tmp_path,
                           terminal_env())
    lines = screen_lines(raw)
    assert code == 0, "\n".join(lines)
    assert not any(error in raw for error in LIVE_DISPLAY_ERRORS), "\n".join(lines)
    for pattern in (r"^overall\s", r"^  epoch\s", r"^    train-val\s", r"^      batch\s"):
        assert any(re.match(pattern, line) for line in lines), f"no {pattern!r} row in\n" + "\n".join(lines)
    final = last_frame(raw)
    assert re.search(r"overall\s.*\s1/1\s", final), final
    [run_dir] = run_dirs(tmp_path / "outputs")
    assert read_json(run_dir / "run.json")["status"] == "succeeded"
    assert [row["count"] for row in read_jsonl(run_dir / "metrics.jsonl")] == [6, 12]  # every batch ran


def test_three_nested_levels_in_a_log_file_complete(tmp_path: Path) -> None:
    proc = subprocess.run(tipi_command(*THREE_LEVELS), cwd=tmp_path, env=terminal_env(), capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr
    done = {m.group(1) for line in proc.stderr.splitlines()
            if (m := PLAIN_LINE.match(line)) and line.endswith(" done")}
    assert {"overall/epoch/train-val/batch", "overall/epoch/train-val", "overall/epoch", "overall"} <= done
    assert re.search(r"^overall 1/1 100% elapsed \S+ done", proc.stderr, re.MULTILINE)
    assert re.search(r"^  overall/epoch 2/2 100% elapsed \S+ done", proc.stderr, re.MULTILINE)
