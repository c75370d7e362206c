"""``tipi-runs reproduce`` without running anything: the plan, the refusals, the comparison, what runs record.

Run directories are written here the way tipi writes them (``run.json``,
``.hydra/``); the end-to-end runs are in ``tests/integration/test_reproduce.py``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module

from tipi._hydra import installed
from tipi.core import provenance
from tipi.core import record as record_module
from tipi.core.builder import PipelineBuilder
from tipi.core.errors import ConfigError
from tipi.core.record import REPRODUCES_ENV, RunRecord
from tipi.runs.errors import RunsError
from tipi.runs.reproduce_compare import _weights, metric_rows, same_storages, within
from tipi.runs.reproduce_env import determinism_note, environment_rows, mapper
from tipi.runs.reproduce_plan import load_original, merge, missing_config_tree, plan

OVERRIDES = ["experiment=mine", "optimizer.lr=0.003", "launcher=slurm", "seed=7"]


def fake_run(run_dir: Path, *, overrides: list[str] = OVERRIDES, config_dir: Path | None = None,
             record: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
             hydra_overrides: tuple[str, ...] = ("hydra.sweep.dir=multirun/s", "hydra.mode=MULTIRUN",
                                                 "hydra.launcher.partition=gpu", "hydra.job.chdir=false"),
             launcher: str = "slurm", config_name: str = "config") -> Path:
    """A job directory as a SLURM multirun leaves it (``record`` and ``config`` update the defaults)."""
    (run_dir / ".hydra").mkdir(parents=True)
    sources = [{"path": "hydra.conf", "schema": "pkg", "provider": "hydra"},
               {"path": "tipi.conf", "schema": "pkg", "provider": "main"}]
    if config_dir is not None:
        sources.append({"path": str(config_dir), "schema": "file", "provider": "command-line"})
    hydra = {"hydra": {
        "overrides": {"hydra": list(hydra_overrides), "task": overrides},
        "runtime": {"cwd": "/launch/dir", "config_sources": sources, "choices": {"launcher": launcher}},
        "job": {"config_name": config_name, "num": 1},
    }}
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": 7, "run": {"deterministic": True},
                                                                    **(config or {})}))
    data = {"status": "succeeded", "seed": 7, "overrides": overrides, "cwd": str(run_dir.parent), "host": "node1",
            "versions": {"python": "3.11.7", "torch": "2.13.0"}, "deterministic": True,
            "git": {"commit": "a" * 40, "dirty": False}, **(record or {})}
    (run_dir / "run.json").write_text(json.dumps(data))
    return run_dir


def test_a_run_is_recomposed_from_its_overrides_config_tree_and_seed(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    job = fake_run(tmp_path / "sweep" / "1", config_dir=conf, config_name="mine")
    planned = plan(load_original(job), ["optimizer.lr=0.01", "+extra.key=1"], out=tmp_path / "new")
    assert planned.command() == [
        sys.executable, "-m", "tipi", "--config-dir", str(conf), "--config-name", "mine",
        "experiment=mine", "optimizer.lr=0.01", "launcher=slurm", "seed=7", "+extra.key=1",
        "hydra.job.chdir=false", f"hydra.run.dir='{tmp_path / 'new'}'",
    ], "the extra value replaces the recorded one; the sweep's placement and launcher settings are left out"
    assert planned.run_dir == tmp_path / "new" and planned.launcher is None, "a job runs as a single run here"
    assert planned.cwd == tmp_path / "sweep", "where the run was launched from"
    assert planned.added == [] and planned.extra == ["optimizer.lr=0.01", "+extra.key=1"]
    assert planned.command(mapper(tmp_path, tmp_path / "checkout"))[4] == str(tmp_path / "checkout" / "conf")


def test_the_recorded_seed_is_added_when_no_override_set_it(tmp_path: Path) -> None:
    job = fake_run(tmp_path / "run", overrides=["model=unet_small"], hydra_overrides=("hydra.run.dir=x",))
    planned = plan(load_original(job), [], out=tmp_path / "new")
    assert planned.added == ["seed=7"] and planned.overrides == ["model=unet_small", "seed=7"]
    assert planned.seed() == "7"


def test_a_resumed_run_keeps_the_overrides_its_attempts_added(tmp_path: Path) -> None:
    attempts = [{"status": "interrupted"}, {"status": "succeeded", "overrides": ["processes.train.epochs=30"]}]
    job = fake_run(tmp_path / "run", overrides=["processes.train.epochs=5", "seed=7"], record={"attempts": attempts},
                   hydra_overrides=())
    assert plan(load_original(job), [], out=tmp_path / "new").overrides == ["processes.train.epochs=30", "seed=7"]


def test_a_launcher_makes_a_one_job_multirun_on_it(tmp_path: Path) -> None:
    job = fake_run(tmp_path / "sweep" / "1")
    for launcher, extra in (("recorded", []), (None, ["launcher=slurm"])):
        planned = plan(load_original(job), extra, launcher=launcher, out=tmp_path / "again")
        command = planned.command()
        assert command[3] == "--multirun" and planned.run_dir == tmp_path / "again" / "0"
        assert "launcher=slurm" in command and "launcher.wait=true" in command
        assert "hydra.launcher.partition=gpu" in command, "the recorded launcher's settings go with it"
        assert command[-2:] == [f"hydra.sweep.dir='{tmp_path / 'again'}'", "hydra.sweep.subdir=0"]
    with pytest.raises(RunsError) as unknown:
        plan(load_original(job), [], launcher="slrum", out=tmp_path / "y")
    assert unknown.value.message.startswith("--launcher: unknown launcher 'slrum'. Valid: ") and "slurm" in (
        unknown.value.message) and unknown.value.hint == "Did you mean 'slurm'?"
    local = fake_run(tmp_path / "local" / "0", launcher="local")
    assert plan(load_original(local), [], launcher="recorded", out=tmp_path / "x").launcher is None


def test_a_trial_of_a_search_runs_as_one_run_without_its_sweeper(tmp_path: Path) -> None:
    trial = fake_run(tmp_path / "trial", overrides=["sweep=seg_lr", "optimizer.lr=0.02", "seed=1"])
    planned = plan(load_original(trial), [], out=tmp_path / "new")
    assert "sweep=seg_lr" not in planned.overrides and "optimizer.lr=0.02" in planned.overrides
    assert planned.dropped and planned.dropped[0].startswith("sweep=seg_lr (a WandB sweep's trial runs as one run")
    optuna = fake_run(tmp_path / "optuna" / "3", overrides=["+hparams_search=seg_optuna", "optimizer.lr=0.0123"],
                      hydra_overrides=("hydra.sweeper.n_trials=4", "hydra.mode=MULTIRUN"))
    for launcher in (None, "slurm"):  # neither here nor on its launcher does it start a new search
        planned = plan(load_original(optuna), [], launcher=launcher, out=tmp_path / "new")
        assert not any("hparams_search" in o or "sweeper" in o for o in planned.command()), planned.command()
        assert planned.dropped[0].startswith("+hparams_search=seg_optuna (an Optuna search's trial runs as one run")


def test_a_ddp_run_keeps_its_world_size_or_is_refused_naming_the_key(tmp_path: Path) -> None:
    ddp = {"distributed": {"world_size": 2, "started_by": "tipi"}}
    job = fake_run(tmp_path / "ddp", record=ddp, config={"distributed": {"nproc_per_node": 2, "nnodes": 1}})
    original = load_original(job)
    assert plan(original, [], out=tmp_path / "a").overrides[-1] == "seed=7"
    single = fake_run(tmp_path / "ddp-config", record=ddp, config={"distributed": {"nproc_per_node": 1}})
    with pytest.raises(RunsError) as fewer:  # started by torchrun with 2 ranks; tipi's own start would make 1
        plan(load_original(single), [], out=tmp_path / "b")
    assert fewer.value.message.startswith("distributed.nproc_per_node: the run ran on 2 rank(s); reproduced here "
                                          "it would run on 1")
    assert "Set distributed.nproc_per_node=2 after RUN" in str(fewer.value.hint)
    two_nodes = fake_run(tmp_path / "nodes", record=ddp, config={"distributed": {"nproc_per_node": 1, "nnodes": 2}})
    with pytest.raises(RunsError) as nodes:
        plan(load_original(two_nodes), [], out=tmp_path / "c")
    assert "distributed.nnodes" in nodes.value.message and "--launcher recorded" in str(nodes.value.hint)
    assert plan(original, ["distributed.nproc_per_node=1"], launcher="slurm", out=tmp_path / "d").launcher == "slurm"
    assert plan(original, ["distributed=none"], out=tmp_path / "f").extra == ["distributed=none"], "asked for"
    slurm_ranks = fake_run(tmp_path / "slurm-ddp", record={"distributed": {"world_size": 4, "started_by": "slurm"}},
                           config={"distributed": {"nproc_per_node": 2, "nnodes": 1}})
    with pytest.raises(RunsError, match="ran on 4 rank"):
        plan(load_original(slurm_ranks), [], out=tmp_path / "e")


def test_what_is_not_a_run_tipi_launched_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunsError, match="is neither a run nor a multirun"):
        load_original(tmp_path / "empty")
    with pytest.raises(RunsError, match="does not exist"):
        load_original(tmp_path / "nowhere")
    programmatic = tmp_path / "programmatic"
    programmatic.mkdir()
    (programmatic / "run.json").write_text('{"status": "succeeded"}')
    with pytest.raises(RunsError, match=r"has no \.hydra/hydra\.yaml: it was not started by `python -m tipi`"):
        load_original(programmatic)
    damaged = fake_run(tmp_path / "damaged")
    (damaged / "run.json").write_text('{"status": "runn')
    with pytest.raises(RunsError, match="has no readable run.json"):
        load_original(damaged)


def test_a_config_tree_that_is_gone_is_named_with_how_to_point_at_it(tmp_path: Path) -> None:
    job = fake_run(tmp_path / "job", config_dir=tmp_path / "moved" / "conf")
    planned = plan(load_original(job), [], out=tmp_path / "new")
    with pytest.raises(RunsError) as gone:
        missing_config_tree(planned)
    assert gone.value.message == f"the run's config tree '{tmp_path / 'moved' / 'conf'}' (its --config-dir) is gone"
    assert f"tipi-runs reproduce {job} --config-dir <path>" in str(gone.value.hint) and "--at-commit" in str(
        gone.value.hint)
    with pytest.raises(RunsError, match="--config-dir .* is not a directory"):
        plan(load_original(job), [], config_dir=tmp_path / "nope", out=tmp_path / "new")
    (tmp_path / "here").mkdir()
    pointed = plan(load_original(job), [], config_dir=tmp_path / "here", out=tmp_path / "new")
    missing_config_tree(pointed)
    assert pointed.config_dirs == [str(tmp_path / "here")]


def test_merge_replaces_by_key_and_appends_the_rest() -> None:
    assert merge(["a=1", "+b.c=2", "~d"], ["b.c=3", "e=4", "a=5"]) == ["a=5", "b.c=3", "~d", "e=4"]


def test_metrics_compare_within_a_relative_or_absolute_tolerance() -> None:
    assert within(1.0, 1.0 + 5e-7, 1e-6) and within(1e-9, 5e-7, 1e-6) and within(1000.0, 1000.0005, 1e-6)
    assert not within(1.0, 1.00001, 1e-6) and within(float("nan"), float("nan"), 0.0) and within("a", "a", 0)
    rows = metric_rows({"loss": 1.0, "acc": 0.5, "gone": 1}, {"loss": 1.5, "acc": 0.5, "new": 2}, 1e-6)
    assert [(r["metric"], r["difference"], r["within"]) for r in rows] == [
        ("loss", 0.5, False), ("acc", 0.0, True), ("gone", None, False), ("new", None, False)]


def test_weights_are_bit_identical_within_tolerance_or_different_naming_the_largest(tmp_path: Path) -> None:
    weights = {"conv.weight": torch.ones(3, 3), "conv.bias": torch.zeros(3), "bn.num_batches_tracked": torch.tensor(4)}
    assert _weights(weights, {k: v.clone() for k, v in weights.items()}, 1e-6)["verdict"] == "bit-identical"
    nudged = {**weights, "conv.bias": torch.full((3,), 1e-8)}
    assert _weights(weights, nudged, 1e-6)["verdict"] == "within tolerance"
    moved = {**weights, "conv.weight": weights["conv.weight"] + 0.25, "conv.bias": torch.full((3,), 0.1)}
    result = _weights(weights, moved, 1e-6)
    assert result["verdict"] == "different" and result["largest"] == {"tensor": "conv.weight", "difference": 0.25}
    assert _weights(weights, {"other": torch.ones(1)}, 1e-6)["verdict"] == "different"
    for name, state in (("a", weights), ("b", {k: v.clone() for k, v in weights.items()}), ("c", moved)):
        torch.save({"model": state, "state": {"step": 1}}, tmp_path / f"{name}.pt")
    assert same_storages(tmp_path / "a.pt", tmp_path / "b.pt"), "equal tensors, compared without torch"
    assert not same_storages(tmp_path / "a.pt", tmp_path / "c.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a zip")
    assert not same_storages(tmp_path / "a.pt", tmp_path / "bad.pt")


def test_the_data_fingerprint_counts_files_and_bytes_within_its_bound(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for name, size in (("images/a.png", 10), ("images/b.png", 20), ("masks/a.png", 5), ("masks/b.png", 7)):
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / name).write_bytes(b"x" * size)
    found = provenance.data_fingerprint(tmp_path / "data")
    assert found == {"root": str(tmp_path / "data"), "files": 4, "bytes": 42, "complete": True}
    monkeypatch.setattr(provenance, "MAX_FILES", 3)
    assert provenance.data_fingerprint(tmp_path / "data")["complete"] is False
    assert provenance.data_fingerprint(tmp_path / "none")["error"] == "not a folder"
    cfg = {"run": {"deterministic": True}, "permanences": {"data": {"root": str(tmp_path / "data")}}}
    from omegaconf import OmegaConf

    assert provenance.run_provenance(OmegaConf.create(cfg))["data"]["files"] == 3
    assert provenance.run_provenance(OmegaConf.create({"permanences": {"data": None}})) == {"deterministic": False}


def test_run_deterministic_turns_torchs_deterministic_algorithms_on_and_back_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        provenance.set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and not torch.backends.cudnn.benchmark
    finally:
        provenance.set_deterministic(False)  # the next job of a process (launcher=local) gets torch's default
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic


def test_run_deterministic_must_be_true_or_false() -> None:
    with installed("params"), initialize_config_module("tipi.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["device=cpu", "run.name=t", "run.deterministic=yes"])
        assert compose(config_name="config").run.deterministic is False, "off unless asked for"
    with pytest.raises(ConfigError) as caught:
        PipelineBuilder(cfg).check()
    assert caught.value.key == "run.deterministic" and "must be true or false, got 'yes'" in str(caught.value)


def test_run_json_records_the_launch_directory_the_diff_and_what_it_reproduces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept: list[Path] = []
    monkeypatch.setattr(record_module, "_git_state", lambda: {"commit": "c" * 40, "dirty": True, "root": "/r"})
    monkeypatch.setattr(record_module, "keep_diff", lambda run_dir, cwd: kept.append(run_dir) or {"diff": "git.diff"})
    monkeypatch.setenv(REPRODUCES_ENV, "/runs/old")
    monkeypatch.setenv("TIPI_ORIGINAL_CWD", "/launch")
    record = RunRecord(tmp_path)
    record.start(name="n", seed=1, overrides=[], extra={"deterministic": True})
    data = json.loads((tmp_path / "run.json").read_text())
    assert data["cwd"] == "/launch" and data["reproduces"] == "/runs/old" and data["deterministic"] is True
    assert data["git"] == {"commit": "c" * 40, "dirty": True, "root": "/r", "diff": "git.diff"} and kept == [tmp_path]


def test_the_tables_compare_records_and_say_what_determinism_means() -> None:
    old = {"git": {"commit": "a", "dirty": True, "diff": "git.diff", "diff_bytes": 12}, "host": "h",
           "versions": {"python": "3.11", "torch": "2.1"}, "device": {"type": "cpu", "name": "EPYC", "threads": 1}}
    new = {**old, "git": {"commit": "b", "dirty": False}, "versions": {"python": "3.11", "torch": "2.2"}}
    rows = {r["what"]: (r["recorded"], r["now"], r["same"]) for r in environment_rows(old, new)}
    assert rows["git commit"] == ("a", "b", False)
    assert rows["uncommitted changes"] == ("yes (kept in git.diff (12 bytes))", "none", False)
    assert rows["torch"] == ("2.1", "2.2", False) and rows["python"][2] is True
    assert rows["device"] == ("cpu: EPYC, 1 thread(s)", "cpu: EPYC, 1 thread(s)", True)
    assert rows["data"][2] is True
    assert "repeat bit for bit" in determinism_note({"deterministic": True})
    assert "small differences are expected" in determinism_note({"deterministic": False, "device": {"type": "cuda"}})
    assert "did not record" in determinism_note({})
