"""``launcher=local`` composes each multirun job's config once: Hydra's own sweeper and launcher, in process.

Hydra's basic sweeper composes every job to check the batch, then its basic
launcher composes each again to run it; tipi's launcher runs each job with the
config the check composed. Counted on Hydra's real config loader, driven by
Hydra's real ``BasicSweeper``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_module
from hydra._internal.callbacks import Callbacks
from hydra.core.global_hydra import GlobalHydra
from hydra.core.plugins import Plugins
from hydra.types import HydraContext
from omegaconf import DictConfig

from tipi._hydra.launchers.checked_configs import CheckedConfigs
from tipi.core.config import register_resolvers

HYDRA_BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
LOCAL = ("launcher=local",)  # on the command line, as a user picks it (the default, auto, may pick the pool)


class CountingLoader:
    """Hydra's config loader, counting the configs composed for sweep jobs."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.composed: list[tuple[str, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        self.composed.append(tuple(sweep_overrides))
        return self.loader.load_sweep_config(master_config, sweep_overrides)


def sweep(tmp_path: Path, *overrides: str, args: tuple[str, ...] = ("seed=1,2,3",)) -> tuple[CountingLoader, list[Any]]:
    """Run Hydra's basic sweeper over ``args`` with tipi's config; the loader's count and the tasks' seeds."""
    seen: list[Any] = []
    register_resolvers()  # as tipi's CLI does
    with initialize_config_module("tipi.conf", version_base="1.3"):
        hydra_overrides = [f"hydra.sweep.dir={tmp_path}", "hydra.callbacks={}", *overrides]
        master = compose("config", overrides=[*hydra_overrides, *LOCAL], return_hydra_config=True)
        with_hydra = DictConfig(master)
        with_hydra.hydra.overrides.hydra = hydra_overrides
        loader = CountingLoader(GlobalHydra.instance().config_loader())
        sweeper = Plugins.instance().instantiate_sweeper(
            config=with_hydra, hydra_context=HydraContext(config_loader=loader, callbacks=Callbacks()),  # type: ignore[arg-type]
            task_function=lambda cfg: seen.append(cfg.seed))
        assert type(sweeper).__name__ == "BasicSweeper"
        sweeper.sweep(arguments=[*LOCAL, *args])
    return loader, seen


def stored(job_dir: Path) -> tuple[Any, Any, Any]:
    """A job's saved config, overrides and Hydra config, less what names the sweep dir or the launcher."""
    hydra_cfg = yaml.safe_load((job_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]
    for key in ("sweep", "launcher", "runtime"):
        hydra_cfg.pop(key)
    hydra_cfg["overrides"].pop("hydra")
    return (yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text()),
            yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()), hydra_cfg)


@pytest.fixture(autouse=True)
def _fresh_hydra() -> Any:
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()


# value overrides of each kind Hydra has (change, add, force-add, delete), a dict value, and a group choice
MIXED = ("seed=1,2", "optimizer.lr=0.1,0.01", "model=unet_small,unet", "+run.note=a", "++run.group=g",
         "~run.tags", "data={num_train:8,image_size:16}")


def test_every_job_gets_the_config_hydras_own_launcher_composes(tmp_path: Path) -> None:
    tipi_loader, tipi_seen = sweep(tmp_path / "tipi", args=MIXED)
    hydra_loader, hydra_seen = sweep(tmp_path / "hydra", f"hydra.launcher._target_={HYDRA_BASIC}", args=MIXED)
    assert tipi_seen == hydra_seen == [1, 1, 1, 1, 2, 2, 2, 2]
    jobs = sorted(p.name for p in (tmp_path / "hydra").iterdir() if p.is_dir())
    assert len(jobs) == 8
    for job in jobs:
        assert stored(tmp_path / "tipi" / job) == stored(tmp_path / "hydra" / job), f"job {job}"
    assert len(hydra_loader.composed) == 16
    # per model choice: its first job, and the base the others are derived from
    assert len(tipi_loader.composed) == 4, tipi_loader.composed


def test_a_value_sweep_composes_twice_in_all(tmp_path: Path) -> None:
    loader, seen = sweep(tmp_path, args=("seed=range(1,7)",))
    assert seen == [1, 2, 3, 4, 5, 6]
    assert loader.composed == [(*LOCAL, "seed=1"), LOCAL], "the first job, then the base of the other five"
    for job, seed in enumerate(range(1, 7)):
        config, overrides, hydra_cfg = stored(tmp_path / str(job))
        assert (config["seed"], overrides, hydra_cfg["job"]["override_dirname"]) == (
            seed, [*LOCAL, f"seed={seed}"], f"launcher=local,seed={seed}")


def test_hydras_launcher_composes_each_job_twice(tmp_path: Path) -> None:
    """What the count above saves: the same sweep through Hydra's own launcher."""
    loader, seen = sweep(tmp_path, f"hydra.launcher._target_={HYDRA_BASIC}", args=("seed=range(1,7)",))
    assert seen == [1, 2, 3, 4, 5, 6]
    assert len(loader.composed) == 12


def test_a_base_that_does_not_reproduce_hydras_config_is_not_used(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    real = CheckedConfigs._apply

    def off_by_one(base: Any, master: Any, parsed: Any, values: Any) -> Any:
        cfg = real(base, master, parsed, values)
        cfg.seed = int(cfg.seed) + 1
        return cfg

    monkeypatch.setattr(CheckedConfigs, "_apply", staticmethod(off_by_one))
    loader, seen = sweep(tmp_path, args=("seed=range(1,5)",))
    assert seen == [1, 2, 3, 4]
    assert loader.composed == [(*LOCAL, f"seed={n}") if n else LOCAL for n in (1, 0, 2, 3, 4)], (
        "the base fails its check against job 1, so every later job is composed by Hydra")


def test_a_bad_job_still_stops_the_sweep_before_any_job_runs(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no_such_model"):
        sweep(tmp_path, args=("model=unet_small,no_such_model",))
    assert not list(tmp_path.glob("*/.hydra"))


def test_checked_configs_are_handed_over_once_and_dropped_after_the_launch() -> None:
    class Loader:
        calls = 0

        def load_sweep_config(self, master_config: Any, sweep_overrides: list[str]) -> Any:
            Loader.calls += 1
            return object()

    checked = CheckedConfigs(Loader())
    first = checked.load_sweep_config(None, ["a=1"])  # type: ignore[arg-type]
    checked.load_sweep_config(None, ["a=2"])  # type: ignore[arg-type]
    checked.launching = True
    assert checked.load_sweep_config(None, ["a=1"]) is first  # type: ignore[arg-type]
    assert checked.load_sweep_config(None, ["a=1"]) is not first, "handed over once"  # type: ignore[arg-type]
    assert Loader.calls == 3
    assert list(checked.kept) == [("a=2",)]
