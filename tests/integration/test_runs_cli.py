"""The runs browser (``python -m tipi.runs`` / ``tipi-runs``) on real and generated run directories.

Generated directories are written the way tipi writes them (``run.json``,
``.hydra/config.yaml`` and ``overrides.yaml``), some failed, some damaged;
real ones come from a ``launcher=local`` sweep through the CLI.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunTipi, read_json, tipi_env
from tests.integration.slurm_helpers import misbehave_config_dir

CONFIG = """seed: {seed}
run:
  name: ${{hydra:job.name}}
  tags:{tags}
  group: null
  objective: test/mean_iou
  objective_mode: {mode}
permanences:
  device:
    _target_: tipi.permanences.device.Device
"""


def runs(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m tipi.runs ARGS`` in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "tipi.runs", *args], cwd=cwd, env=tipi_env(), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def fake_run(run_dir: Path, i: int, status: str = "succeeded", objective: float | None = None,
             tags: tuple[str, ...] = (), mode: str = "max", started: str = "2026-11-30T10:00:00+00:00") -> None:
    """A run directory as tipi leaves it (record fields as :class:`tipi.core.record.RunRecord` writes them)."""
    (run_dir / ".hydra").mkdir(parents=True)
    overrides = [f"seed={i}", f"optimizer.lr={0.001 * (i % 7 + 1):g}"]
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    tag_lines = "".join(f"\n  - {t}" for t in tags) or " []"
    (run_dir / ".hydra" / "config.yaml").write_text(CONFIG.format(seed=i, tags=tag_lines, mode=mode))
    record = {
        "attempts": [{"start": started, "end": started, "status": status, "host": "node1"}],
        "status": status, "name": "tipi", "seed": i, "started": started, "ended": started, "host": "node1",
        "pid": 1, "argv": ["tipi", *overrides], "versions": {"python": "3.11.7", "tipi": "0.1.0"},
        "overrides": overrides, "wandb_run_id": f"id{i:05d}", "metrics": {"test/mean_iou": objective},
        "objective": objective, "duration_s": 1.5 + i,
        "error": "RuntimeError: boom\nmore" if status == "failed" else None,
    }
    (run_dir / "run.json").write_text(json.dumps(record, indent=2))


def thousand_runs(root: Path) -> dict[str, int]:
    """1,000 run directories: most succeeded, 1 in 10 failed, 1 in 25 damaged (two kinds); returns the counts."""
    counts = {"succeeded": 0, "failed": 0, "corrupt": 0}
    for i in range(1000):
        run_dir = root / "outputs" / f"2026-11-{1 + i // 100:02d}" / f"10-{i // 60 % 60:02d}-{i % 60:02d}-{i}"
        status = "failed" if i % 10 == 3 else "succeeded"
        fake_run(run_dir, i, status, objective=i / 1000 if status == "succeeded" else None,
                 started=f"2026-11-{1 + i // 100:02d}T10:{i // 60 % 60:02d}:{i % 60:02d}+00:00")
        if i % 50 == 7:
            (run_dir / "run.json").write_text('{"status": "runn')  # cut short: a full disk, a killed writer
            status = "corrupt"
        elif i % 50 == 9:
            (run_dir / "run.json").unlink()  # killed before it wrote its record
            status = "corrupt"
        counts[status] += 1
    return counts


def test_a_thousand_run_dirs_list_in_a_second_without_torch_and_json_round_trips(tmp_path: Path) -> None:
    counts = thousand_runs(tmp_path)
    # the list command as a user runs it, timed inside its process (interpreter start-up excluded)
    probe = (
        "import contextlib, io, json, sys, time\n"
        "t0 = time.perf_counter()\n"
        "from tipi.runs.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    rc = main(['list', 'outputs', '--json'])\n"
        "seconds = time.perf_counter() - t0\n"
        "heavy = [m for m in ('torch', 'omegaconf', 'hydra', 'matplotlib') if m in sys.modules]\n"
        "print(json.dumps({'rc': rc, 'seconds': seconds, 'heavy': heavy, 'rows': json.loads(out.getvalue())}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=tipi_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    print(f"listed 1000 run dirs in {result['seconds']:.3f} s")  # the figure the issue asks for (-s shows it)
    assert result["rc"] == 0 and result["heavy"] == [], result["heavy"]
    assert result["seconds"] < 5.0, "the goal is 1 s; 5 s leaves room for a loaded machine"
    rows: list[dict[str, Any]] = result["rows"]
    assert len(rows) == 1000
    assert {s: sum(r["status"] == s for r in rows) for s in counts} == counts
    for row in rows:
        run_dir = Path(row["run_dir"])
        if row["status"] == "corrupt":
            assert row["record"] is None and row["error"] in ("no run.json", "run.json is unreadable")
            assert row["overrides"], "a damaged run still shows its overrides (from .hydra/)"
            continue
        assert row["record"] == read_json(run_dir / "run.json"), "--json carries run.json as stored"
        assert (row["objective"], row["overrides"], row["wandb_run_id"]) == (
            row["record"]["objective"], row["record"]["overrides"], row["record"]["wandb_run_id"])
    started = [r["started"] or "" for r in rows]
    assert started == sorted(started, reverse=True), "newest first"


def test_filters_best_n_by_objective_mode_and_csv(tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    fake_run(out / "a", 1, objective=0.5, tags=("base",), started="2026-11-01T10:00:00+00:00")
    fake_run(out / "b", 2, objective=0.9, tags=("base", "big"))
    fake_run(out / "c", 3, status="failed", tags=("big",))
    for name, loss in (("l1", 0.3), ("l2", 0.1), ("l3", 0.2)):  # a loss: smaller is better
        fake_run(tmp_path / "losses" / name, 4, objective=loss, mode="min")
    best = json.loads(runs("list", "--best", "2", "--json", cwd=tmp_path).stdout)
    assert [Path(r["run_dir"]).name for r in best] == ["b", "a"]
    best = json.loads(runs("list", "losses", "--best", "2", "--json", cwd=tmp_path).stdout)
    assert [Path(r["run_dir"]).name for r in best] == ["l2", "l3"], "objective_mode: min"
    tagged = json.loads(runs("list", "--tag", "big", "--status", "succeeded", "--json", cwd=tmp_path).stdout)
    assert [Path(r["run_dir"]).name for r in tagged] == ["b"]
    recent = json.loads(runs("list", "outputs", "--since", "2026-11-15", "--glob", "*/[bc]", "--json",
                             cwd=tmp_path).stdout)
    assert sorted(Path(r["run_dir"]).name for r in recent) == ["b", "c"]
    table = list(csv.DictReader(runs("list", "--csv", "--sort", "objective", cwd=tmp_path).stdout.splitlines()))
    assert [(Path(r["run_dir"]).name, r["status"]) for r in table] == [
        ("b", "succeeded"), ("a", "succeeded"), ("c", "failed")]
    assert table[0]["tags"] == "base big" and table[0]["overrides"] == "seed=2 optimizer.lr=0.003"
    plain = runs("list", cwd=tmp_path).stdout  # not a terminal: aligned plain text, no box, no colour
    assert plain.splitlines()[0].split() == ["status", "objective", "duration_s", "started", "name", "tags",
                                             "overrides", "run_dir"]
    assert "\x1b[" not in plain and "┃" not in plain and len(plain.splitlines()) == 4


def test_status_show_and_compare_of_a_local_sweep(run_tipi: RunTipi, tmp_path: Path) -> None:
    conf = misbehave_config_dir(tmp_path)
    proc = run_tipi("-m", "--config-dir", str(conf), "+experiment=misbehave", "seed=1,2",
                    "hydra.sweep.dir=multirun/s")
    assert proc.returncode != 0, "a job failed"
    sweep = tmp_path / "multirun" / "s"
    (sweep / "summary.csv").unlink()
    status = runs("multirun", "status", "multirun/s", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert [(r["job"], r["status"]) for r in json.loads(status.stdout)] == [(0, "succeeded"), (1, "failed")]
    rows = list(csv.DictReader((sweep / "summary.csv").read_text().splitlines()))
    assert [(r["overrides"], r["status"]) for r in rows] == [("experiment=misbehave seed=1", "succeeded"),
                                                             ("experiment=misbehave seed=2", "failed")]
    shown = runs("show", "multirun/s/0", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"python -m tipi resume={sweep / '0'}" in shown.stdout
    info = json.loads(runs("show", "multirun/s/0", "--json", cwd=tmp_path).stdout)
    diff = {item["key"]: item["run"] for item in info["config_diff"]}
    assert diff["seed"] == 1 and diff["processes.misbehave.raise_on_seed"] == 2, "keys that differ from the defaults"
    assert "device" not in diff, "unchanged keys are not listed"
    filled = [k for k in diff if k.endswith(".force") or k == "data.drop_last"]
    assert not filled, f"parameters filled in at their signature's default are no difference: {filled}"
    assert [a["status"] for a in info["attempts"]] == ["succeeded"]
    compared = runs("compare", "multirun/s", cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    assert (sweep / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    nothing = runs("multirun", "resubmit", "multirun/s", cwd=tmp_path)
    assert nothing.returncode == 1 and "no manifest.json" in nothing.stderr and "Traceback" not in nothing.stderr


def test_a_damaged_job_is_a_corrupt_row_not_a_crash(tmp_path: Path) -> None:
    sweep = tmp_path / "multirun" / "s"
    fake_run(sweep / "0", 0, objective=0.4)
    fake_run(sweep / "1", 1, objective=0.2)
    (sweep / "1" / "run.json").write_text("{")
    (sweep / "2").mkdir()  # a job killed before it wrote anything
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    listed = json.loads(runs("list", "--json", cwd=tmp_path).stdout)
    assert sorted((Path(r["run_dir"]).name, r["status"]) for r in listed) == [
        ("0", "succeeded"), ("1", "corrupt"), ("2", "corrupt")]
    status = json.loads(runs("sweep", "status", "multirun/s", "--json", cwd=tmp_path).stdout)
    assert [(r["job"], r["status"]) for r in status] == [(0, "succeeded"), (1, "corrupt"), (2, "corrupt")]


@pytest.mark.parametrize("args, message", [
    (("show", "nowhere"), "does not exist"),
    (("show", "."), "neither a run nor a multirun"),
    (("sweep", "status", "."), "neither a run nor a multirun"),
    (("compare", "."), "neither a run nor a multirun"),
    (("list", "--status", "succeded"), "Did you mean 'succeeded'?"),
])
def test_bad_input_is_one_message_and_a_non_zero_exit(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    proc = runs(*args, cwd=tmp_path)
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_detaching_the_local_launcher_is_refused_in_one_message(run_tipi: RunTipi, tmp_path: Path) -> None:
    proc = run_tipi("-m", "debug=fast", "launcher.wait=false", "seed=1,2")
    assert proc.returncode != 0
    assert "launcher.wait" in proc.stderr and "launcher=slurm" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.rglob("run.json")), "nothing ran"


def test_a_closed_pipe_ends_the_listing_quietly(tmp_path: Path) -> None:
    for i in range(400):  # more than a pipe's buffer holds
        fake_run(tmp_path / "outputs" / f"r{i:03d}", i, objective=i / 400)
    lister = subprocess.Popen([sys.executable, "-m", "tipi.runs"], cwd=tmp_path, env=tipi_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert lister.stdout is not None and lister.stderr is not None
    lister.stdout.readline()  # `tipi-runs | head -1`
    lister.stdout.close()
    err = lister.stderr.read().decode()
    lister.stderr.close()
    assert lister.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_filters_that_match_nothing_say_how_many_runs_there_are(tmp_path: Path) -> None:
    for i in range(3):
        fake_run(tmp_path / "outputs" / f"r{i}", i, objective=0.5)
    proc = runs("list", "--status", "failed", "--since", "2d", cwd=tmp_path)
    assert proc.returncode == 0
    assert "3 run(s) under outputs, multirun; none matches the filters" in proc.stderr
    empty = runs("list", cwd=tmp_path / "outputs" / "r0" / ".hydra")
    assert "no runs under outputs, multirun" in empty.stderr


def test_a_run_with_thousands_of_tags_is_one_short_row(tmp_path: Path) -> None:
    fake_run(tmp_path / "outputs" / "r0", 0, objective=0.5, tags=tuple(f"tag{i}" for i in range(3000)))
    proc = runs("list", cwd=tmp_path)  # COLUMNS=200 in the tests' environment
    [_header, row] = proc.stdout.splitlines()
    assert len(row) < 400 and "…" in row, len(row)
    assert row.rstrip().endswith("outputs/r0"), "the run directory is never cut"
