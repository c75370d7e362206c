"""Sweep parameters -> checked Hydra overrides, the sweep spec, composition, and the local engine.

The engine tests run WandB's real sweep engine (the ``sweeps`` package) with a
trial runner that reports a metric instead of training, so they take well
under a second each; the CLI tests in tests/integration run real pipelines.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from tipi.core.errors import SweepError
from tipi.wandb_sweeps import choose_backend, compose
from tipi.wandb_sweeps.local import LocalSweep
from tipi.wandb_sweeps.overrides import flatten, param_overrides, to_override
from tipi.wandb_sweeps.spec import SweepSpec
from tipi.wandb_sweeps.summary import print_summary, write_summary
from tipi.wandb_sweeps.trial import Trial, TrialRunner

GRID = {"method": "grid", "parameters": {"model": {"values": ["unet", "unet_small"]},
                                         "optimizer.lr": {"values": [1e-3, 1e-2]}}}


@pytest.fixture
def no_hydra_config() -> Iterator[None]:
    """Compose tests run outside ``python -m tipi``; whatever they set must not leak into other tests."""
    instance = HydraConfig.instance()
    previous = instance.cfg
    instance.cfg = None
    yield
    instance.cfg = previous


# -- parameters -> overrides ----------------------------------------------------
@pytest.mark.parametrize(("name", "value", "expected"), [
    ("model", "unet_small", "model=unet_small"),
    ("optimizer.lr", 1e-05, "optimizer.lr=1e-05"),
    ("optimizer.lr", np.float64(0.003), "optimizer.lr=0.003"),
    ("processes.train.epochs", np.int64(3), "processes.train.epochs=3"),
    ("+run.note", "two words", "+run.note='two words'"),
    ("run.name", "true", "run.name='true'"),  # would otherwise parse as a bool
    ("run.name", "a,b", "run.name='a,b'"),  # would otherwise be a Hydra sweep
    ("run.name", "it's", "run.name='it\\'s'"),
    ("run.tags", ["a", 1, None], "run.tags=[a,1,null]"),
    ("data/aug", "strong", "data/aug=strong"),
])
def test_parameters_become_overrides_that_parse_back_to_the_same_value(name: str, value: Any,
                                                                       expected: str) -> None:
    assert to_override(name, value) == expected


@pytest.mark.parametrize(("name", "value", "key"), [
    ("model._target_", "os.system", "sweep.parameters.model._target_"),
    ("permanences.network._recursive_", True, "sweep.parameters.permanences.network._recursive_"),
    ("model", {"_target_": "os.system"}, "sweep.parameters.model._target_"),
    ("hydra.job.chdir", True, "sweep.parameters.hydra.job.chdir"),
    ("hydra/launcher", "submitit_slurm", "sweep.parameters.hydra/launcher"),
    ("+hydra.callbacks.x", 1, "sweep.parameters.+hydra.callbacks.x"),
    ("sweep.id", "abc", "sweep.parameters.sweep.id"),
    ("resume", "/tmp/x", "sweep.parameters.resume"),
    ("run.name", "${oc.env:WANDB_API_KEY}", "sweep.parameters.run.name"),
    ("model", "../data/shapes", "sweep.parameters.model"),
    ("model@pkg", "unet", "sweep.parameters.model@pkg"),
    ("~processes.test", None, "sweep.parameters.~processes.test"),
])
def test_parameters_that_could_run_code_are_refused_naming_the_key(name: str, value: Any, key: str) -> None:
    with pytest.raises(SweepError) as info:
        to_override(name, value)
    assert info.value.key == key


def test_allow_lets_a_trusted_sweep_set_a_protected_key() -> None:
    assert to_override("model._target_", "my.Model", allow=["model._target_"]) == "model._target_=my.Model"
    assert to_override("hydra.job.chdir", False, allow=["hydra.*"]) == "hydra.job.chdir=false"
    with pytest.raises(SweepError):
        to_override("permanences.data._target_", "x.Y", allow=["model._target_"])


def test_wandb_nested_parameters_become_dotted_overrides() -> None:
    nested = {"optimizer": {"parameters": {"lr": {"values": [0.1]}, "weight_decay": {"values": [0.0]}}},
              "model": {"values": ["unet"]}}
    params = {"optimizer": {"lr": 0.1, "weight_decay": 0.0}, "model": "unet"}
    assert flatten(params, nested) == {"optimizer.lr": 0.1, "optimizer.weight_decay": 0.0, "model": "unet"}
    assert param_overrides(params, nested) == ["optimizer.lr=0.1", "optimizer.weight_decay=0.0", "model=unet"]


# -- the sweep spec ----------------------------------------------------------------
def test_spec_separates_tipis_keys_from_wandbs_format() -> None:
    spec = SweepSpec.from_config({**GRID, "name": "g", "run_cap": None, "backend": "local", "count": 2,
                                  "allow": ["model._target_"], "seed": 7, "agent": 3},
                                 objective="test/mean_iou", objective_mode="max")
    assert set(spec.wandb) == {"method", "parameters", "name", "metric"}  # run_cap: null is "no cap"
    assert spec.metric_name == "test/mean_iou" and spec.goal == "max"
    assert (spec.backend, spec.count, spec.allow, spec.seed, spec.run_cap) == ("local", 2, ("model._target_",), 7,
                                                                               None)
    assert spec.parameter_names == ("model", "optimizer.lr")
    assert SweepSpec.from_config({**GRID, "id": "abc"}).backend == "wandb"  # joining needs the server


@pytest.mark.parametrize(("change", "key"), [
    ({"method": "hyperband"}, "sweep.method"),
    ({"parameters": {}}, "sweep.parameters"),
    ({"parameters": {"model._target_": {"values": ["os.system"]}}}, "sweep.parameters.model._target_"),
    ({"parameters": {"run.name": {"value": "${oc.env:HOME}"}}}, "sweep.parameters.run.name"),
    ({"method": "bayes"}, "sweep.metric"),
    ({"run_cap": 0}, "sweep"),  # WandB's own schema: run_cap > 0
    ({"backend": "cloud"}, "sweep.backend"),
    ({"count": 0}, "sweep.count"),
])
def test_spec_errors_name_the_key(change: dict[str, Any], key: str) -> None:
    with pytest.raises(SweepError) as info:
        SweepSpec.from_config({**GRID, **change})
    assert info.value.key == key


def test_choose_backend_runs_offline_sweeps_here_and_explains_impossible_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    wandb_logger = OmegaConf.create({"logger": {"_target_": "tipi.permanences.wandb.WandBManager", "mode": None}})
    plain_logger = OmegaConf.create({"logger": {"_target_": "tipi.permanences.metrics_logger.MetricsLogger"}})
    assert choose_backend(SweepSpec.from_config(GRID), wandb_logger) == "local"
    assert choose_backend(SweepSpec.from_config(GRID), plain_logger) == "local"
    with pytest.raises(SweepError) as info:
        choose_backend(SweepSpec.from_config({**GRID, "id": "abc"}), plain_logger)
    assert info.value.key == "logger"
    with pytest.raises(SweepError) as info:
        choose_backend(SweepSpec.from_config({**GRID, "id": "abc", "backend": "local"}), wandb_logger)
    assert info.value.key == "sweep.id"


# -- composition ---------------------------------------------------------------------
def test_run_overrides_drop_the_sweep_and_let_parameters_win() -> None:
    base = ["+experiment=seg", "+sweep=seg_lr", "sweep.id=abc", "sweep.parameters.model.values=[unet]",
            "resume=/x", "model=unet_small", "optimizer.lr=0.1", "debug=fast"]
    params = ["model=unet", "optimizer.lr=0.001"]
    assert compose.run_overrides(base, params) == ["experiment=seg", "debug=fast", "model=unet",
                                                   "optimizer.lr=0.001"]


def test_compose_uses_real_hydra_and_makes_each_run_a_hydra_job(tmp_path: Path, no_hydra_config: None) -> None:
    full = compose.compose(["+experiment=seg", "model=unet_small", "optimizer=sgd", "optimizer.lr=0.05"],
                           tmp_path / "3")
    job = compose.job_config(full)
    assert "hydra" not in job and job.model._target_.endswith("UNet") and job.model.base_channels == 8
    assert job.optimizer._target_ == "torch.optim.SGD" and job.optimizer.lr == 0.05
    assert not HydraConfig.initialized()
    with compose.hydra_job(full):
        assert job.run.name == "tipi"  # ${hydra:job.name} resolves inside the run
        assert HydraConfig.get().runtime.output_dir == str(tmp_path / "3")
        assert HydraConfig.get().runtime.choices.model == "unet_small"
        assert list(HydraConfig.get().overrides.task) == ["experiment=seg", "model=unet_small", "optimizer=sgd",
                                                          "optimizer.lr=0.05"]
    assert not HydraConfig.initialized()  # nothing leaks out of a run
    compose.save(full, job, ["model=unet_small"], tmp_path / "3")
    assert OmegaConf.load(tmp_path / "3" / ".hydra" / "config.yaml").optimizer.lr == 0.05
    assert list(OmegaConf.load(tmp_path / "3" / ".hydra" / "overrides.yaml")) == ["model=unet_small"]


def test_a_choice_that_does_not_exist_is_a_config_error(tmp_path: Path, no_hydra_config: None) -> None:
    with pytest.raises(Exception) as info:
        compose.compose(["model=unett"], tmp_path)
    assert getattr(info.value, "key", None) == "sweep.parameters" and "unett" in str(info.value)


# -- the local engine ------------------------------------------------------------------
class ScoringTrials(TrialRunner):
    """Scores a trial from its parameters instead of training; re-seeds the global generators like a run does."""

    def __init__(self, spec: SweepSpec, sweep_dir: Path, fail: frozenset[str] = frozenset()) -> None:
        super().__init__(spec, sweep_dir, [])
        self.fail = fail
        self.ran: list[str] = []

    def run(self, trial: Trial) -> Trial:
        random.seed(0)
        np.random.seed(0)  # what PipelineRunner.run_once does for seed=0
        self.ran.append(trial.name)
        lr = float(trial.params.get("optimizer.lr", 0.01))
        if trial.name in self.fail:
            trial.status, trial.error = "failed", "boom"
        else:
            trial.status, trial.objective = "succeeded", -abs(math.log10(lr) + 2.5)
        return trial


def _spec(**changes: Any) -> SweepSpec:
    return SweepSpec.from_config({**GRID, "metric": {"name": "val/mean_iou", "goal": "maximize"}, **changes})


def test_grid_runs_every_point_once_and_stops(tmp_path: Path) -> None:
    spec = _spec()
    trials = LocalSweep(spec, tmp_path, ScoringTrials(spec, tmp_path)).run()
    points = {(t.params["model"], t.params["optimizer.lr"]) for t in trials}
    assert len(trials) == 4 and points == {(m, lr) for m in ("unet", "unet_small") for lr in (1e-3, 1e-2)}
    assert [t.name for t in trials] == ["0", "1", "2", "3"]


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_random_and_bayes_propose_fresh_points_up_to_the_run_cap(tmp_path: Path, method: str) -> None:
    spec = _spec(method=method, run_cap=5,
                 parameters={"model": {"values": ["unet", "unet_small"]},
                             "optimizer.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1}})
    trials = LocalSweep(spec, tmp_path, ScoringTrials(spec, tmp_path)).run()
    lrs = [t.params["optimizer.lr"] for t in trials]
    assert len(trials) == 5
    # Every run re-seeds the global generators; proposals must not repeat because of it.
    assert len(set(lrs)) == 5 and all(1e-4 <= lr <= 1e-1 for lr in lrs)
    assert all(isinstance(lr, float) for lr in lrs)


def test_proposals_are_reproducible_from_the_sweep_seed(tmp_path: Path) -> None:
    spec = _spec(method="random", run_cap=3, seed=11,
                 parameters={"optimizer.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1}})
    first = LocalSweep(spec, tmp_path / "a", ScoringTrials(spec, tmp_path / "a")).run()
    second = LocalSweep(spec, tmp_path / "b", ScoringTrials(spec, tmp_path / "b")).run()
    assert [t.params for t in first] == [t.params for t in second]


def test_count_limits_one_agent_and_a_second_agent_continues_the_sweep(tmp_path: Path) -> None:
    spec = _spec(count=3)
    first = ScoringTrials(spec, tmp_path)
    assert len(LocalSweep(spec, tmp_path, first).run()) == 3
    # Pretend the third run was killed mid-way: the next agent resumes it, then finishes the grid.
    state = (tmp_path / "sweep.json").read_text().replace('"status": "succeeded"', '"status": "running"', 1)
    (tmp_path / "sweep.json").write_text(state)
    second = ScoringTrials(spec, tmp_path)
    trials = LocalSweep(spec, tmp_path, second).run()
    assert second.ran == ["0", "3"]
    assert len(trials) == 4 and len({(t.params["model"], t.params["optimizer.lr"]) for t in trials}) == 4


def test_a_sweep_stops_after_too_many_failures_in_a_row(tmp_path: Path) -> None:
    spec = _spec(max_consecutive_failures=2)
    engine = LocalSweep(spec, tmp_path, ScoringTrials(spec, tmp_path, fail={"0", "1", "2"}))
    with pytest.raises(SweepError, match="2 sweep runs failed in a row"):
        engine.run()
    assert [t.status for t in engine.trials] == ["failed", "failed"]


# -- the summary ---------------------------------------------------------------------------
def test_summary_is_a_csv_and_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trials = [Trial(0, "0", {"model": "unet", "optimizer.lr": 0.001}, "succeeded", 0.5, 1.0),
              Trial(1, "1", {"model": "unet_small", "optimizer.lr": 0.01}, "failed", None, 2.0, "boom [x]")]
    path = write_summary(tmp_path, trials, ["model", "optimizer.lr"])
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert path.name == "sweep_summary.csv"
    assert [(r["run"], r["model"], r["optimizer.lr"], r["status"], r["objective"]) for r in rows] == [
        ("0", "unet", "0.001", "succeeded", "0.5"), ("1", "unet_small", "0.01", "failed", "")]
    print_summary(trials, ["model", "optimizer.lr"], title="sweep summary", metric="val/mean_iou", best=trials[0])
    err = capsys.readouterr().err
    assert "sweep summary" in err and "unet_small" in err and "boom [x]" in err and "0 *" in err
