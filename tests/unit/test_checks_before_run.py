"""Nothing lost, nothing silent: every value and shape is checked before any job, naming the key the user typed.

Real Hydra composition of tipi's config tree (with the seam's params hook, as
``python -m tipi`` composes) and the real builder and runner, in process: no
process is started. Issue 28, items 7, 8, 10 and 11.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image
from torch import nn

from tipi._hydra import installed
from tipi.core.builder import PipelineBuilder
from tipi.core.check import typed_key
from tipi.core.errors import ConfigError, DataError
from tipi.core.runner import PipelineRunner
from tipi.permanences.data import Data
from tipi.vision.folder import write_folder_dataset
from tipi.vision.shapes import ShapesDataset

HERE = "tests.unit.test_checks_before_run"
# A small, quick pipeline: the default config with the debug preset's sizes, on the CPU.
BASE = ("debug=fast", "model=unet_small", "progress=none", "device=cpu", "run.name=t")

Compose = Callable[..., DictConfig]


@pytest.fixture
def tipi_compose() -> Iterator[Compose]:
    """``compose(*overrides)``: tipi's config tree composed by Hydra, as ``python -m tipi`` composes it."""
    with installed("params"), initialize_config_module("tipi.conf", version_base="1.3"):
        yield lambda *overrides: compose(config_name="config", overrides=[*BASE, *overrides])


def refused(cfg: DictConfig) -> ConfigError:
    """The error the builder's whole gate (every check, the network's probe last) raises for ``cfg``."""
    with pytest.raises(ConfigError) as caught:
        PipelineBuilder(cfg).build()
    return caught.value


# --------------------------------------------------------------------------- item 7: the key the user typed


def test_a_reference_is_followed_back_to_the_key_the_user_typed() -> None:
    raw = {
        "seed": 3,
        "data": {"seed": "${seed}", "batch_size": 4, "num_classes": 4, "root": "${oc.env:HOME}",
                 "limit": "${data.nope}"},
        "model": {"num_classes": "${data.num_classes}"},
        "permanences": {"data": "${data}", "network": {"model": "${model}"}, "loop": "${permanences.loop}"},
    }
    assert typed_key(raw, "permanences.data.batch_size") == "data.batch_size"
    assert typed_key(raw, "permanences.data.seed") == "seed"
    assert typed_key(raw, "permanences.network.model.num_classes") == "data.num_classes"
    assert typed_key(raw, "permanences.data.root") == "data.root"  # a resolver is a value, not a reference
    assert typed_key(raw, "processes.train.epochs") == "processes.train.epochs"  # not in the tree: as it is
    assert typed_key(raw, "permanences.loop.x") == "permanences.loop.x"  # a cycle ends
    assert typed_key(raw, "permanences.data.limit") == "data.limit"  # a reference to nothing: its holder


# Every parameter of every built-in target of the default pipeline, with a bad value of each kind it can
# have (a wrong type; a value out of range), and the key the message must name: the one the user typed.
BAD_VALUES = [
    # the issue's own cases
    ("seed=1.5", "seed", "expected int, got float 1.5"),
    ("data.batch_size=abc", "data.batch_size", "expected int, got str 'abc'"),
    ("optimizer.lr=abc", "optimizer.lr", "must be a number >= 0 (e.g. 1e-3), got str 'abc'"),
    ("optimizer.lr=-1", "optimizer.lr", "must be a number >= 0 (e.g. 1e-3), got -1"),
    ("data.num_classes=0", "data.num_classes", "must be at least 1, got 0"),
    ("run.objective_mode=maximize", "run.objective_mode", "unknown choice 'maximize'. Valid: max, min"),
    # the top-level keys a permanence refers to
    ("seed=-1", "seed", "must be at least 0, got -1"),
    # data (ShapesData)
    ("data.batch_size=0", "data.batch_size", "must be at least 1, got 0"),
    ("data.eval_batch_size=0", "data.eval_batch_size", "must be at least 1 (or null for batch_size), got 0"),
    ("data.num_workers=-1", "data.num_workers", "must be at least 0, got -1"),
    ("data.num_classes=3", "data.num_classes", "must be 4 for the shapes data"),
    ("data.num_train=0", "data.num_train", "must be at least 1, got 0"),
    ("data.num_val=zero", "data.num_val", "expected int, got str 'zero'"),
    ("data.image_size=8", "data.image_size", "must be at least 16, got 8"),
    ("data.noise=-0.5", "data.noise", "must be a number >= 0"),
    ("data.max_shapes=0", "data.max_shapes", "must be at least 1, got 0"),
    ("data.limit_train=0", "data.limit_train", "must be at least 1 (or null for all), got 0"),
    ("data.drop_last=maybe", "data.drop_last", "expected bool, got str 'maybe'"),
    # model (UNet): its constructor's own refusal, found by building it on the meta device
    ("model.depth=0", "model.depth", "tipi.vision.unet.UNet refuses depth=0: depth must be >= 1, got 0"),
    ("model.base_channels=-4", "model.base_channels", "refuses base_channels=-4"),
    ("model.in_channels=0", "model.in_channels", "refuses in_channels=0"),
    ("model.depth=abc", "model.depth", "expected int, got str 'abc'"),
    ("model.num_classes=0", "model.num_classes", "refuses num_classes=0: num_classes must be >= 1, got 0"),
    # the network itself
    ("permanences.network.amp=abc", "permanences.network.amp", "expected bool, got str 'abc'"),
    ("permanences.network.checkpoint_dir=/tmp/ckpt", "permanences.network.checkpoint_dir",
     "must be a folder name inside the run directory (like 'checkpoints'), got '/tmp/ckpt'"),
    # optimizer (Adam, SGD) and scheduler (CosineAnnealingLR)
    ("optimizer.weight_decay=-0.1", "optimizer.weight_decay", "must be a number >= 0, got -0.1"),
    ("+optimizer.betas=[0.9,1.5]", "optimizer.betas", "must be two numbers in [0, 1)"),
    ("+optimizer.eps=-1e-8", "optimizer.eps", "must be a number >= 0, got -1e-08"),
    ("+optimizer.amsgrad=abc", "optimizer.amsgrad", "expected bool, got str 'abc'"),
    ("scheduler.T_max=0", "scheduler.T_max", "must be a whole number >= 1 (epochs), got 0"),
    ("+scheduler.eta_min=-1", "scheduler.eta_min", "must be a number >= 0, got -1"),
    ("+scheduler.last_epoch=-5", "scheduler.last_epoch",
     "torch.optim.lr_scheduler.CosineAnnealingLR refuses last_epoch=-5"),
    # processes
    ("processes.train.epochs=0", "processes.train.epochs", "must be at least 1, got 0"),
    ("processes.train.log_every_n_steps=0", "processes.train.log_every_n_steps", "must be at least 1, got 0"),
    ("processes.train.checkpoint_every_n_steps=-1", "processes.train.checkpoint_every_n_steps",
     "must be at least 0 (0: a checkpoint at the end of each epoch only), got -1"),
    ("processes.train.figures_every_n_epochs=-1", "processes.train.figures_every_n_epochs", "must be at least 0"),
    ("processes.train.num_figure_samples=0", "processes.train.num_figure_samples", "must be at least 1, got 0"),
    ("processes.train.early_stopping_patience=0", "processes.train.early_stopping_patience",
     "must be at least 1 (or null for no early stopping), got 0"),
    ("processes.train.monitor_mode=maximum", "processes.train.monitor_mode", "unknown choice 'maximum'"),
    ("processes.train.force=abc", "processes.train.force", "expected bool, got str 'abc'"),
    ("processes.test.use_best=abc", "processes.test.use_best", "expected bool, got str 'abc'"),
    ("processes.result.num_samples=0", "processes.result.num_samples", "must be at least 1 (images in the grid)"),
]


@pytest.mark.parametrize(("override", "key", "message"), BAD_VALUES, ids=[case[0] for case in BAD_VALUES])
def test_a_bad_value_names_the_key_the_user_typed_and_what_is_valid(tipi_compose: Compose, override: str,
                                                                      key: str, message: str) -> None:
    error = refused(tipi_compose(override))
    assert error.key == key, str(error)
    assert message in error.message, str(error)
    if not override.startswith("permanences."):
        assert "permanences." not in str(error), "the internal path is not what the user typed"


def test_sgd_values_torch_refuses_are_blamed_on_the_parameter(tipi_compose: Compose) -> None:
    error = refused(tipi_compose("optimizer=sgd", "optimizer.momentum=0", "+optimizer.nesterov=true"))
    assert error.key == "optimizer.momentum"
    assert "torch.optim.SGD refuses momentum=0: Nesterov momentum requires a momentum" in error.message
    assert error.hint == "Valid: a number >= 0."
    assert refused(tipi_compose("optimizer=sgd", "optimizer.momentum=-0.5")).key == "optimizer.momentum"


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    return write_folder_dataset(tmp_path / "data", ShapesDataset(10, image_size=32, seed=1), 10)


@pytest.mark.parametrize(("override", "key", "message"), [
    ("data.val_fraction=1.5", "data.val_fraction", "must be a number in [0, 1), got 1.5"),
    ("data.test_fraction=-0.1", "data.test_fraction", "must be a number in [0, 1), got -0.1"),
    ("data.val_fraction=0.9", "data.val_fraction", "val_fraction + test_fraction must be less than 1"),
    ("data.image_size=0", "data.image_size", "must be at least 1 (or null for each image's own size), got 0"),
    ("data.mask_values=[0,0]", "data.mask_values", "must be distinct pixel values >= 0"),
    ("data.mask_values=[0,1,2,3,4]", "data.mask_values", "lists 5 values, one a class, but data.num_classes is 4"),
])
def test_folder_data_values_name_their_key(tipi_compose: Compose, folder_root: Path, override: str, key: str,
                                           message: str) -> None:
    error = refused(tipi_compose("data=folder", f"data.root={folder_root}", override))
    assert (error.key, message in error.message) == (key, True), str(error)


# --------------------------------------------------------------------------- item 8: nothing silently accepted


def _write_mask(path: Path, width: int, height: int) -> None:
    Image.fromarray(np.zeros((height, width), dtype=np.uint8)).save(path)


def test_masks_of_another_size_are_refused_or_resized_with_a_warning(tipi_compose: Compose, folder_root: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    _write_mask(folder_root / "masks" / "00003.png", 16, 16)  # half the image's 32x32: the same shape
    permanences, _ = PipelineBuilder(tipi_compose("data=folder", f"data.root={folder_root}")).build()
    with caplog.at_level(logging.WARNING, logger="tipi.vision.folder"):
        permanences["data"].prepare()
    [warning] = [r.getMessage() for r in caplog.records if r.name == "tipi.vision.folder"]
    assert "1 of 10 mask(s) differ in size from their image" in warning
    assert "'00003.png' is 32x32 but its mask is 16x16" in warning and "data.image_size=32 resizes both" in warning

    permanences, _ = PipelineBuilder(tipi_compose("data=folder", f"data.root={folder_root}",
                                                  "data.image_size=null")).build()
    with pytest.raises(DataError) as caught:
        permanences["data"].prepare()
    assert "image '00003.png' is 32x32 but its mask is 16x16" in caught.value.message
    assert "set data.image_size to resize both" in (caught.value.hint or "")

    _write_mask(folder_root / "masks" / "00005.png", 32, 20)  # another shape: resizing would stretch it
    permanences, _ = PipelineBuilder(tipi_compose("data=folder", f"data.root={folder_root}")).build()
    with pytest.raises(DataError) as caught:
        permanences["data"].prepare()
    assert "image '00005.png' is 32x32 but its mask is 32x20, another shape" in caught.value.message


# --------------------------------------------------------------------------- item 10: shapes, before anything


def _run_refused(cfg: DictConfig, run_dir: Path) -> ConfigError:
    """The runner's error for ``cfg``; the run directory must hold nothing afterwards."""
    with pytest.raises(ConfigError) as caught:
        PipelineRunner(cfg, run_dir=run_dir, overrides=[]).run()
    assert not run_dir.exists() or not any(run_dir.iterdir()), f"a refused run wrote {list(run_dir.rglob('*'))}"
    return caught.value


@pytest.mark.parametrize(("overrides", "key", "needles"), [
    (("model=unet", "model.depth=9"), "model.depth",
     ("one batch of the configured shape [1, 3, 32, 32] does not pass through the model",
      "divisible by 2**depth = 512")),
    (("model=unet", "data.image_size=30"), "data.image_size", ("[1, 3, 30, 30]", "divisible by 2**depth = 8")),
    (("model.in_channels=1",), "model.in_channels", ("expected input [N, 1, H, W], got [1, 3, 32, 32]",)),
    (("model.num_classes=3",), "model.num_classes",
     ("the model gives 3 output channel(s) [1, 3, 32, 32], but the data has 4 classes (data.num_classes=4)",)),
], ids=["depth-9-at-32px", "30px-at-depth-3", "in-channels", "num-classes"])
def test_a_batch_that_does_not_fit_the_unet_is_refused_before_anything_is_built(
        tipi_compose: Compose, tmp_path: Path, overrides: tuple[str, ...], key: str, needles: tuple[str, ...]) -> None:
    start = time.perf_counter()
    error = _run_refused(tipi_compose(*overrides), tmp_path / "run")
    assert time.perf_counter() - start < 30, "found without building the network (a 9-level U-Net takes ~70 s)"
    assert error.key == key, str(error)
    for needle in needles:
        assert needle in error.message, str(error)
    for involved in ("data.image_size=", "model.in_channels=", "model.depth=", "data.num_classes="):
        assert involved in (error.hint or ""), error.hint


def _torch_model(cfg: DictConfig, model: dict[str, Any]) -> DictConfig:
    with open_dict(cfg):
        cfg.model = OmegaConf.create(model)
    return cfg


def conv(in_channels: int, out_channels: int, kernel_size: int = 3, **more: Any) -> dict[str, Any]:
    return {"_target_": "torch.nn.Conv2d", "in_channels": in_channels, "out_channels": out_channels,
            "kernel_size": kernel_size, "padding": kernel_size // 2, **more}


def sequential(*layers: dict[str, Any]) -> dict[str, Any]:
    return {"_target_": "torch.nn.Sequential", "_args_": list(layers)}


def test_the_probe_runs_a_model_of_another_library_too(tipi_compose: Compose, tmp_path: Path) -> None:
    """torch.nn's own modules, targeted from the config: a stack of convolutions."""
    good = sequential(conv(3, 8), {"_target_": "torch.nn.ReLU"}, conv(8, 4, 1))
    permanences, _ = PipelineBuilder(_torch_model(tipi_compose(), good)).build()
    assert permanences["network"] is not None

    wrong_input = sequential(conv(1, 8), {"_target_": "torch.nn.ReLU"}, conv(8, 4, 1))
    error = _run_refused(_torch_model(tipi_compose(), wrong_input), tmp_path / "a")
    assert error.key == "model"
    assert "one batch of the configured shape [1, 3, 32, 32] does not pass through the model" in error.message
    assert "expected input[1, 3, 32, 32] to have 1 channels" in error.message
    assert "data.image_size=32" in (error.hint or "") and "data.num_classes=4" in (error.hint or "")

    wrong_classes = sequential(conv(3, 8), {"_target_": "torch.nn.ReLU"}, conv(8, 3, 1))
    error = _run_refused(_torch_model(tipi_compose(), wrong_classes), tmp_path / "b")
    assert error.key == "model"
    assert "the model gives 3 output channel(s) [1, 3, 32, 32], but the data has 4 classes" in error.message

    shrinks = sequential(conv(3, 8), {"_target_": "torch.nn.MaxPool2d", "kernel_size": 2}, conv(8, 4, 1))
    error = _run_refused(_torch_model(tipi_compose(), shrinks), tmp_path / "c")
    assert "the model's output is 16x16 for 32x32 images" in error.message

    one_conv = conv(3, 4, 1, bias="yes")  # a value of the wrong type, in torch's own signature
    assert refused(_torch_model(tipi_compose(), one_conv)).key == "model.bias"


class ReadsBack(nn.Module):
    """A user's model that reads a value back in its forward pass (the meta device holds no values)."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.abs().max()) > 1e6:  # .item() on a meta tensor cannot be answered
            raise ValueError("input out of range")
        return self.head(x)


class ReadsBackWhenBuilt(nn.Module):
    """A user's model that reads a value back while it is built."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.scale = float(torch.linspace(0, 1, 3)[1])
        self.head = nn.Conv2d(3, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x) * self.scale


@pytest.mark.parametrize("model", ["ReadsBack", "ReadsBackWhenBuilt"])
def test_a_model_the_meta_device_cannot_run_is_probed_on_the_cpu_or_skipped_never_refused(
        tipi_compose: Compose, model: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    cfg = tipi_compose(f"model._target_={HERE}.{model}", "~model.in_channels", "~model.base_channels",
                       "~model.depth")
    PipelineBuilder(cfg).build()  # small: run for real on the CPU, with a zero batch of size 1
    monkeypatch.setattr("tipi.permanences.probe.CPU_PROBE_MAX_PARAMETERS", 0)  # as if too large to build twice
    with caplog.at_level(logging.DEBUG, logger="tipi.permanences.probe"):
        PipelineBuilder(tipi_compose(f"model._target_={HERE}.{model}", "~model.in_channels",
                                     "~model.base_channels", "~model.depth")).build()
    assert any(r.levelno == logging.DEBUG and "probe:" in r.getMessage() for r in caplog.records), caplog.text


def test_data_of_no_fixed_image_size_skips_the_shape_probe(tipi_compose: Compose, folder_root: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    cfg = tipi_compose("data=folder", f"data.root={folder_root}", "data.image_size=null", "model.depth=9")
    with caplog.at_level(logging.DEBUG, logger="tipi.permanences.probe"):
        PipelineBuilder(cfg).build()
    assert "the data does not say its batch shape" in caplog.text


def test_the_probe_costs_milliseconds_on_the_seg_unet(tipi_compose: Compose) -> None:
    """The seg experiment's U-Net (64 px, depth 3): every permanence's check, the network's probe among them,
    measured at ~16 ms median on a shared 2-core CPU (the issue note); bounded loosely here."""
    builder = PipelineBuilder(tipi_compose("model=unet", "data.image_size=64"))
    builder.check()
    builder.check_permanences()  # the first pays torch.optim's one-time imports, as initialize would
    times = []
    for _ in range(7):
        start = time.perf_counter()
        builder.check_permanences()
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.5, times  # generous: the suite loads both cores


# --------------------------------------------------------------------------- item 11: a batch larger than the set


def test_a_batch_larger_than_the_training_set_warns_once_and_with_drop_last_is_refused(
        tipi_compose: Compose, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tipi.permanences.data"):
        permanences, _ = PipelineBuilder(tipi_compose("data.batch_size=100000")).build()
        data = permanences["data"]
        assert isinstance(data, Data)
        data.prepare()
        assert data.steps_per_epoch() == 1 and len(next(iter(data.loader("train")))[0]) == 64
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("data.batch_size=100000 is larger than the training set (64 samples): each epoch "
                              "trains 1 batch of 64 samples")
    error = refused(tipi_compose("data.batch_size=100000", "data.drop_last=true"))
    assert error.key == "data.batch_size"
    assert "larger than the training set (64 samples): with data.drop_last=true no full batch" in error.message
    assert "at most 64" in (error.hint or "")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tipi.permanences.data"):
        PipelineBuilder(tipi_compose("data.batch_size=64", "data.drop_last=true")).build()
    assert not caplog.records
