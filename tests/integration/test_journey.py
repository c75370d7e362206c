"""The script-to-pipeline journey (docs/journey.md): every level runs, and the page shows the real code.

Levels 0-4 are scripts run standalone in a fresh interpreter (``WANDB_MODE=disabled``);
level 5 is a config that runs the level-4 function through ``python -m tipi``.
The page's code blocks, diffs and table of diff sizes are checked against the
files, so the docs cannot drift from the code. Eight fresh interpreters, each
importing torch: 5-9 s each on a 2-core CPU of its own, 2-3 minutes in all on a
shared one under a load of 9.
"""

from __future__ import annotations

import ast
import difflib
import itertools
import math
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, RunTipi, read_json, read_jsonl, run_dirs, tipi_env

JOURNEY = REPO / "examples" / "journey"
DOC = REPO / "docs" / "journey.md"
SCRIPTS = ("level0_script.py", "level1_progress.py", "level2_tracking.py", "level3_device.py",
           "level4_function.py")
LEVEL5 = "level5/conf/experiment/journey.yaml"
LIMIT_S = 30.0  # the promise: every level runs in under 30 s, on a 2-core CPU too
HANDFUL = 15  # no step of the journey may change more lines than this
LOSS_LINE = re.compile(r"^epoch (\d+): loss (\d+\.\d+)$", re.MULTILINE)
PROGRESS_LINE = re.compile(r"^ *[\w/-]+ \d+(?:/\d+)? (?:\d+% )?elapsed \d+:\d\d:\d\d\b[^\x1b]*$")
# A marker line, then a fenced block: <!-- journey-code: FILE --> or <!-- journey-diff: OLD NEW -->
BLOCK = re.compile(r"<!-- (journey-code|journey-diff): ([^>]+?) -->\n```[a-z]*\n(.*?)```\n", re.DOTALL)
TABLE_ROW = re.compile(r"^\| (\d) \| \[`([^`]+)`\][^|]*\| (\d+) \| (\d+) \|", re.MULTILINE)


# -- what the page must show ------------------------------------------------------------
def read_level(name: str) -> str:
    """The text of a journey file, by its path under ``examples/journey``."""
    return (JOURNEY / name).read_text()


def unified_diff(old: str, new: str) -> str:
    """The diff from journey file ``old`` to ``new`` as the page shows it (one line of context)."""
    lines = difflib.unified_diff(read_level(old).splitlines(), read_level(new).splitlines(),
                                 fromfile=old, tofile=new, n=1, lineterm="")
    return "".join(line + "\n" for line in lines)


def changed_lines(old_text: str, new_text: str) -> tuple[int, int]:
    """Non-blank lines ``(added, removed)`` going from ``old_text`` to ``new_text``; a changed line counts in both."""
    old, new = old_text.splitlines(), new_text.splitlines()
    added = removed = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag != "equal":
            removed += sum(1 for line in old[i1:i2] if line.strip())
            added += sum(1 for line in new[j1:j2] if line.strip())
    return added, removed


def expected_sizes() -> dict[int, tuple[str, int, int]]:
    """Level -> (file, added, removed) against the level before; level 5 adds a config, no Python."""
    sizes = {0: (SCRIPTS[0], 0, 0)}
    for level, (old, new) in enumerate(itertools.pairwise(SCRIPTS), start=1):
        sizes[level] = (new, *changed_lines(read_level(old), read_level(new)))
    sizes[5] = (LEVEL5, *changed_lines("", read_level(LEVEL5)))
    return sizes


def doc_blocks() -> dict[tuple[str, str], str]:
    """The page's marked blocks: ``(kind, argument) -> text``."""
    return {(kind, arg): text for kind, arg, text in BLOCK.findall(DOC.read_text())}


# -- the page ---------------------------------------------------------------------------
def test_the_page_shows_each_levels_real_code_and_diff() -> None:
    blocks = doc_blocks()
    for name in (*SCRIPTS, LEVEL5):
        code = read_level(name)
        assert blocks.get(("journey-code", name)) == code, f"docs/journey.md: the code of {name} is now\n{code}"
    for old, new in itertools.pairwise(SCRIPTS):
        diff = unified_diff(old, new)
        assert blocks.get(("journey-diff", f"{old} {new}")) == diff, f"docs/journey.md: the diff is now\n{diff}"


def test_the_page_states_the_true_diff_sizes_and_they_are_a_handful() -> None:
    stated = {int(level): (name, int(added), int(removed))
              for level, name, added, removed in TABLE_ROW.findall(DOC.read_text())}
    actual = expected_sizes()
    assert stated == actual
    for level in range(1, 6):
        _, added, removed = actual[level]
        assert 0 < added + removed <= HANDFUL, f"level {level} changes {added} + {removed} lines"


def test_the_training_logic_is_the_same_text_at_every_level() -> None:
    # Copy-paste compatibility: levels wrap train_step, they never rewrite it.
    def train_step_source(name: str) -> str | None:
        source = read_level(name)
        return next((ast.get_source_segment(source, node) for node in ast.parse(source).body
                     if isinstance(node, ast.FunctionDef) and node.name == "train_step"), None)

    sources = {name: train_step_source(name) for name in SCRIPTS}
    assert sources[SCRIPTS[0]] is not None
    assert set(sources.values()) == {sources[SCRIPTS[0]]}


def test_level5_runs_the_level4_function_unchanged() -> None:
    # Level 5 adds a config and no Python: its process *is* the level-4 function.
    assert "_target_: examples.journey.level4_function.train" in read_level(LEVEL5)


# -- timing ------------------------------------------------------------------------------
def children_cpu_s() -> float:
    """CPU seconds (user + system) of every child process this one has waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Stopwatch:
    """Wall and CPU seconds of the subprocesses run inside a ``with`` block."""

    wall_s = cpu_s = 0.0

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), children_cpu_s()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.cpu_s = children_cpu_s() - self._cpu

    def assert_under(self, limit_s: float, what: str) -> None:
        """CPU time under ``limit_s``; wall time too, scaled up only when the machine is oversubscribed.

        The machine that runs the tests may be shared: with twice as many
        runnable processes as cores a run's wall time doubles whatever it does.
        Its CPU time does not, so that is always held to the limit.
        """
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        wall_limit = limit_s * max(1.0, load / cores)
        detail = f"{what}: {self.wall_s:.1f} s wall, {self.cpu_s:.1f} s CPU, load {load:.1f} on {cores} cores"
        assert self.cpu_s < limit_s, detail
        assert self.wall_s < wall_limit, detail


# -- levels 0-4: scripts --------------------------------------------------------------
def run_script(name: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Stopwatch]:
    """Run ``examples/journey/<name>`` in a fresh interpreter in ``tmp_path``; return the process and its times."""
    env = tipi_env(WANDB_MODE="disabled", WANDB_DIR=str(tmp_path))
    with Stopwatch() as watch:
        proc = subprocess.run([sys.executable, str(JOURNEY / name)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc, watch


def printed_losses(stdout: str) -> list[float]:
    """The ``epoch N: loss X`` lines, in order; checks the epochs count up from 0."""
    found = LOSS_LINE.findall(stdout)
    assert [int(epoch) for epoch, _ in found] == list(range(len(found))), stdout
    return [float(loss) for _, loss in found]


@pytest.mark.parametrize("level", range(5))
def test_each_script_level_runs_standalone_in_under_30_s(level: int, tmp_path: Path) -> None:
    proc, watch = run_script(SCRIPTS[level], tmp_path)
    losses = printed_losses(proc.stdout)
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    watch.assert_under(LIMIT_S, SCRIPTS[level])
    # Not a terminal: from level 1 on, stderr holds the standalone display's plain, nested
    # lines and nothing else (no warning, no WandB chatter); level 0 writes none.
    bars = proc.stderr.splitlines()
    assert all(PROGRESS_LINE.match(line) for line in bars), proc.stderr
    if level >= 1:
        assert "epoch/batch 4/4 100%" in proc.stderr and "epoch 2/2 100%" in proc.stderr
    else:
        assert bars == []
    assert not (tmp_path / "wandb").exists()  # WANDB_MODE=disabled is honoured


# -- level 5: the same function in the pipeline ------------------------------------------
def test_level5_config_runs_the_function_with_the_pipelines_bars_and_logger(run_tipi: RunTipi,
                                                                             tmp_path: Path) -> None:
    with Stopwatch() as watch:
        proc = run_tipi("--config-dir", str(JOURNEY / "level5" / "conf"), "+experiment=journey",
                        env=tipi_env(WANDB_MODE="disabled"), check=True)
    watch.assert_under(LIMIT_S, "level 5")
    [run_dir] = run_dirs(tmp_path / "outputs")
    rows = read_jsonl(run_dir / "metrics.jsonl")
    # logger.log() went to the pipeline's logger: the run's metrics.jsonl, one row per epoch.
    assert [(row["step"], row["epoch"]) for row in rows] == [(0, 0), (1, 1)]
    assert [f"{row['train/loss']:.4f}" for row in rows] == [f"{x:.4f}" for x in printed_losses(proc.stdout)]
    record = read_json(run_dir / "run.json")
    assert record["status"] == "succeeded"
    assert record["objective"] == pytest.approx(rows[-1]["train/loss"])  # the function's return value
    # progress_bar() drew on the pipeline's display, nested under the executor's "overall" bar.
    assert "overall/epoch/batch 4/4 100%" in proc.stderr and "overall 1/1 100%" in proc.stderr
    assert (run_dir / ".hydra" / "config.yaml").is_file()


def test_the_function_named_on_the_command_line_only(run_tipi: RunTipi, tmp_path: Path) -> None:
    target = "examples.journey.level4_function.train"
    common = ("~pipeline", "permanences.data=null", "permanences.network=null", "progress=none")
    # A typo in the function's option is caught before anything runs, from its signature.
    proc = run_tipi(*common, f"++processes={{train: {{_target_: {target}, epocs: 1}}}}")
    assert proc.returncode != 0 and "processes.train.epocs" in proc.stderr
    assert "Did you mean 'epochs'?" in proc.stderr
    assert not list(tmp_path.rglob("metrics.jsonl"))
    run_tipi(*common, f"++processes={{train: {{_target_: {target}, epochs: 1}}}}", "run.objective=train/loss",
             env=tipi_env(WANDB_MODE="disabled"), check=True)
    [run_dir] = run_dirs(tmp_path / "outputs")
    [row] = read_jsonl(run_dir / "metrics.jsonl")
    assert row["epoch"] == 0 and read_json(run_dir / "run.json")["objective"] == pytest.approx(row["train/loss"])
