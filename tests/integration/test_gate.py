"""One gate: what can be known before the first permanence initializes is refused then, naming the key;
what needs the data is refused while the data loads, before the first training step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import RunTipi, read_json, read_jsonl

FAST = ("debug=fast", "model=unet_small", "progress=none")


def write_folder(root: Path, n: int = 12, mask_scale: int = 1, size: int = 24) -> Path:
    """``n`` image/mask pairs: a bright square on dark noise, its mask ``mask_scale`` where the square is."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), dtype=np.uint8)
        x, y = rng.integers(0, size // 2, 2)
        image[y:y + 8, x:x + 8] = 220
        mask[y:y + 8, x:x + 8] = mask_scale
        Image.fromarray(image).save(root / "images" / f"{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:03d}.png")
    return root


def assert_refused_before_anything(proc, *needles: str, run: Path) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run / "run.json").exists(), "refused before the run record is written"
    assert not (run / "checkpoints").exists()


def test_debug_fast_shrinks_folder_data_too(run_tipi: RunTipi, tmp_path: Path) -> None:
    root = write_folder(tmp_path / "mydata", n=30)
    run_tipi(*FAST, "data=folder", f"data.root={root}", "data.num_classes=2", "hydra.run.dir=run", check=True)
    record = read_json(tmp_path / "run" / "run.json")
    assert record["status"] == "succeeded"
    assert "test/mean_iou" in record["metrics"]


def test_the_seg_experiment_takes_folder_data(run_tipi: RunTipi, tmp_path: Path) -> None:
    root = write_folder(tmp_path / "mydata", n=30)
    proc = run_tipi("+experiment=seg", "data=folder", f"data.root={root}", "data.num_classes=2", "--cfg", "job",
                    check=True)
    assert "_target_: tipi.permanences.data.FolderData" in proc.stdout
    assert "num_train" not in proc.stdout


def test_masks_of_0_and_255_are_refused_while_loading_with_the_remedy(run_tipi: RunTipi, tmp_path: Path) -> None:
    root = write_folder(tmp_path / "mydata", mask_scale=255)
    proc = run_tipi(*FAST, "data=folder", f"data.root={root}", "data.num_classes=2", "hydra.run.dir=run")
    assert proc.returncode == 1
    assert "Error data.root: mask '" in proc.stderr
    assert "holds class 255 (masks hold [0, 255]), but num_classes is 2" in proc.stderr
    assert "data.mask_values=[0,255]" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists(), "no training step ran"
    assert not [m for m in read_jsonl(tmp_path / "run" / "metrics.jsonl") if "train/loss" in m] \
        if (tmp_path / "run" / "metrics.jsonl").exists() else True
    # the remedy works
    run_tipi(*FAST, "data=folder", f"data.root={root}", "data.num_classes=2", "data.mask_values=[0,255]",
             "hydra.run.dir=run2", check=True)
    assert read_json(tmp_path / "run2" / "run.json")["status"] == "succeeded"


@pytest.mark.parametrize(("override", "needles"), [
    ("run.objective=test/mean_iuo", ("Error run.objective: no process of this pipeline logs a metric 'test/mean_iuo'",
                                     "Did you mean 'test/mean_iou'?")),
    ("processes.train.monitor=val/mean_iuo", ("Error processes.train.monitor: no process of this pipeline logs a "
                                             "metric 'val/mean_iuo'", "Did you mean 'val/mean_iou'?")),
    ("processes.train.on_nan=skp", ("Error processes.train.on_nan: unknown choice 'skp'. Valid: raise, skip",
                                    "Did you mean 'skip'?")),
    ("processes.train.epochs=0", ("Error processes.train.epochs: must be at least 1, got 0",)),
    ("optimizer.lrr=0.1", ("Error optimizer.lrr: unknown key 'lrr'. Valid: _partial_, _target_, lr, weight_decay",
                           "Did you mean 'lr'?")),
    ("model=unett", ("Error model: unknown option 'unett'. Valid: unet, unet_small", "Did you mean 'unet'?")),
    ("distributd=ddp", ("Error distributd: unknown key or config group 'distributd'", "Did you mean 'distributed'?")),
])
def test_a_mistake_anywhere_is_refused_before_anything_initializes(run_tipi: RunTipi, tmp_path: Path,
                                                                   override: str, needles: tuple[str, ...]) -> None:
    proc = run_tipi(*FAST, override, "hydra.run.dir=run")
    assert_refused_before_anything(proc, *needles, run=tmp_path / "run")
    assert "data: train=" not in proc.stdout, "the data-load step must not have run"
    assert "search path" not in proc.stderr.lower() and "HYDRA_FULL_ERROR" not in proc.stderr


def test_resume_trains_longer_with_more_epochs_and_records_the_override(run_tipi: RunTipi, tmp_path: Path) -> None:
    run_tipi(*FAST, "processes.train.epochs=2", "hydra.run.dir=run", check=True)
    run = tmp_path / "run"
    first_test = read_json(run / "test_metrics.json")
    run_tipi(f"resume={run}", "processes.train.epochs=3", check=True)
    record = read_json(run / "run.json")
    assert record["status"] == "succeeded"
    assert len(record["attempts"]) == 2
    assert record["attempts"][1]["overrides"] == ["processes.train.epochs=3"]
    epochs = {m["epoch"] for m in read_jsonl(run / "metrics.jsonl") if "val/mean_iou" in m and "epoch" in m}
    assert epochs == {0, 1, 2}, "a third epoch was trained and validated"
    second_test = read_json(run / "test_metrics.json")
    assert second_test["step"] > first_test["step"], "test ran again on the longer-trained weights"
    config = (run / ".hydra" / "config.yaml").read_text()
    assert "epochs: 2" in config, "the run's own config is kept; the attempt's override is recorded beside it"


def test_resume_refuses_what_would_change_what_the_checkpoint_means(run_tipi: RunTipi, tmp_path: Path) -> None:
    run_tipi(*FAST, "hydra.run.dir=run", check=True)
    run = tmp_path / "run"
    before = (run / "run.json").read_text()
    proc = run_tipi(f"resume={run}", "model=unet")
    assert proc.returncode == 1
    assert "Error model: cannot be changed when resuming: the run was started with model=unet_small" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (run / "run.json").read_text() == before
    assert json.loads(before)["status"] == "succeeded"
