"""A search's settings and space, checked before any worker starts: every bad input one error naming the key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict

from tipi._hydra import installed
from tipi._hydra.search.settings import read_settings
from tipi._hydra.search.space import parse_space, trial_overrides
from tipi._hydra.search.study import make_pruner, make_sampler
from tipi.core.config import register_resolvers
from tipi.core.errors import ConfigError

Compose = Callable[..., DictConfig]


@pytest.fixture
def search_cfg(tmp_path: Path) -> Iterator[Compose]:
    """``search_cfg(*overrides)``: the seg experiment with ``search=asha``, its Hydra config included."""
    register_resolvers()
    with installed("params"), initialize_config_module("tipi.conf", version_base="1.3"):
        def make(*overrides: str) -> DictConfig:
            cfg = compose(config_name="config", return_hydra_config=True,
                          overrides=["experiment=seg", "search=asha", f"hydra.sweep.dir={tmp_path}", *overrides])
            with open_dict(cfg):
                cfg.hydra.runtime.choices = {"model": "unet", "optimizer": "adam", "data": "shapes_large"}
            return cfg
        yield make


def settings(cfg: DictConfig, sweeper: dict[str, Any] | None = None, args: tuple[str, ...] = ()) -> Any:
    return read_settings(cfg, sweeper or {}, list(args))


def test_the_seg_search_reads_its_space_direction_and_study(search_cfg: Compose, tmp_path: Path) -> None:
    s = settings(search_cfg("search.trials=12"), args=("seed=3",))
    assert set(s.space) == {"optimizer.lr", "model"} and s.fixed == ["seed=3"]
    assert s.space["optimizer.lr"].log and s.space["model"].choices == ("unet", "unet_small")
    assert (s.direction, s.trials, s.sampler, s.pruner) == ("maximize", 12, "tpe", "asha")
    assert s.storage == str(tmp_path / "study.journal") and s.max_epochs == 16
    assert type(make_sampler(s)).__name__ == "TPESampler"
    assert type(make_pruner(s)).__name__ == "SuccessiveHalvingPruner"


def test_a_sweep_on_the_command_line_joins_the_space(search_cfg: Compose) -> None:
    s = settings(search_cfg(), args=("optimizer.weight_decay=interval(0.0, 0.1)", "data.batch_size=range(8, 32, 8)",
                                     "+search.params.data.noise=interval(0.0, 0.2)"))
    assert {"optimizer.weight_decay", "data.batch_size", "data.noise"} <= set(s.space)
    assert s.space["data.batch_size"].step == 8


def test_an_optuna_sweeper_file_is_read_with_its_own_keys(search_cfg: Compose) -> None:
    sweeper = {"direction": "minimize", "n_trials": 7, "n_jobs": 3, "study_name": "mnist",
               "sampler": {"_target_": "optuna.samplers.RandomSampler", "seed": 1},
               "params": {"optimizer.lr": "interval(0.0001, 0.1)", "data.batch_size": "choice(32, 64)"}}
    cfg = search_cfg()
    with open_dict(cfg):
        del cfg["search"]
    s = settings(cfg, sweeper)
    assert (s.direction, s.trials, s.workers, s.study_name, s.pruner) == ("minimize", 7, 3, "mnist", "none")
    assert type(make_sampler(s, worker=2)).__name__ == "RandomSampler"


@pytest.mark.parametrize(("override", "key", "words"), [
    ("search.sampler=bayes", "search.sampler", "Valid: tpe, random, grid, cmaes, qmc"),
    ("search.pruner=early", "search.pruner", "Valid: asha, hyperband, median, none"),
    ("search.trials=0", "search.trials", "at least 1"),
    ("search.storage=redis://host/0", "search.storage", "scheme 'redis'"),
    ("search.direction=up", "search.direction", "maximize, minimize"),
    ("+search.params.optimizer.lrr='interval(0.1,1.0)'", "search.params.optimizer.lrr", "not a key of the config"),
    ("+search.params.hydra.job.name='choice(a,b)'", "search.params.hydra.job.name", "cannot be searched"),
    ("+search.params.model._target_='choice(a,b)'", "search.params.model._target_", "cannot be searched"),
    ("processes.train.monitor=null", "search.pruner", "processes.train.monitor is unset"),
    ("~search.params", "search.params", "the search space is empty"),
])
def test_bad_input_is_refused_naming_the_key(search_cfg: Compose, override: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings(search_cfg(override))
    assert info.value.key == key and words in str(info.value.message), info.value.message


def test_grid_takes_choices_and_ranges_only(search_cfg: Compose) -> None:
    s = settings(search_cfg("search.sampler=grid"))
    with pytest.raises(ConfigError) as info:
        make_sampler(s)
    assert info.value.key == "search.params.optimizer.lr"
    s.space.pop("optimizer.lr")
    assert type(make_sampler(s)).__name__ == "GridSampler"


def test_the_space_syntax_is_hydra_optuna_sweepers() -> None:
    space, fixed = parse_space({"a": "tag(log, interval(1e-4, 3e-2))", "b": "interval(1, 10)", "c": "range(8, 64)",
                                "d": "choice(x, 'y z')", "e": 5})
    assert space["a"].log and (space["a"].low, space["a"].high) == (1e-4, 3e-2)
    assert type(space["b"]).__name__ == "FloatDistribution"
    assert (type(space["c"]).__name__, space["c"].low, space["c"].high) == ("IntDistribution", 8, 63)
    assert space["d"].choices == ("x", "y z") and fixed == ["e=5"]
    assert trial_overrides({"a": 0.001, "model": "unet_small", "d": "y z"}) == ["a=0.001", "model=unet_small",
                                                                             "d='y z'"]


def test_a_trial_is_pruned_at_an_epoch_boundary_but_never_after_its_last_epoch() -> None:
    from tipi.core import trial

    seen: list[tuple[int, float, bool]] = []
    trial.report(1, 0.5)  # outside a search: nothing happens
    with trial.reporting_to(lambda step, value, final: seen.append((step, value, final)) or True):
        trial.report(4, 0.9, final=True)  # trained in full: reported, not pruned
        with pytest.raises(trial.TrialPruned, match="after step 2"):
            trial.report(2, 0.25)
        assert trial.last_reported() == (2, 0.25)
    assert seen == [(4, 0.9, True), (2, 0.25, False)] and not trial.in_trial()
