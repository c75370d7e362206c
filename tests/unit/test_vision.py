"""Behaviour of tipi.vision: the shapes and folder datasets, the U-Net, metrics and figures."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tipi.vision.figures import default_class_colors, save_metric_curves, save_prediction_grid
from tipi.vision.folder import FolderDataError, FolderDataset, write_folder_dataset
from tipi.vision.metrics import ConfusionMatrix
from tipi.vision.shapes import CLASS_NAMES, ShapesDataset, _inside
from tipi.vision.unet import UNet

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shapes() -> ShapesDataset:
    return ShapesDataset(64, image_size=32, seed=5)


# --------------------------------------------------------------------------- shapes


def test_shapes_items_have_the_documented_types_and_ranges(shapes: ShapesDataset) -> None:
    image, mask = shapes[0]
    assert image.dtype == torch.float32 and image.shape == (3, 32, 32)
    assert mask.dtype == torch.int64 and mask.shape == (32, 32)
    assert len(shapes) == 64
    assert shapes.images.min() >= -1.0 and shapes.images.max() <= 1.0
    assert set(torch.unique(shapes.masks).tolist()) <= {0, 1, 2, 3}
    assert CLASS_NAMES == ("background", "circle", "rectangle", "triangle")


def test_sample_depends_only_on_seed_and_index() -> None:
    small = ShapesDataset(3, seed=7)
    large = ShapesDataset(40, seed=7)
    for i in range(3):
        assert torch.equal(small[i][0], large[i][0]) and torch.equal(small[i][1], large[i][1])
    again = ShapesDataset(3, seed=7)
    assert torch.equal(again.images, small.images)
    other = ShapesDataset(3, seed=8)
    assert not torch.equal(other.masks, small.masks)


def test_every_image_has_shapes_and_every_class_appears() -> None:
    data = ShapesDataset(200, seed=1)
    foreground = (data.masks > 0).flatten(1).sum(dim=1)
    assert (foreground > 0).all()
    fraction = torch.bincount(data.masks.flatten().long(), minlength=4) / data.masks.numel()
    assert (fraction[1:] > 0.03).all(), fraction  # each shape class is a real share of the pixels
    assert 0.5 < fraction[0] < 0.95


def test_colour_does_not_encode_the_class_but_separates_shapes_from_background() -> None:
    data = ShapesDataset(300, seed=3, noise=0.0)
    rgb = (data.images * 0.5 + 0.5).permute(0, 2, 3, 1)  # [N, H, W, 3] in [0, 1]
    means = torch.stack([rgb[data.masks == c].mean(dim=0) for c in (1, 2, 3)])
    assert (means.max(dim=0).values - means.min(dim=0).values).max() < 0.08, means

    is_background = (data.masks == 0).unsqueeze(-1)
    background = (rgb * is_background).sum(dim=(1, 2)) / is_background.sum(dim=(1, 2))  # [N, 3]
    distance = (rgb - background[:, None, None]).norm(dim=-1)
    shape_distance = distance[data.masks > 0]
    assert (shape_distance > 0.25).float().mean() > 0.99


def test_shape_geometry_has_the_expected_area() -> None:
    size = 200.0
    coords = np.arange(1000, dtype=np.float64) + 0.5
    yy, xx = coords[None, :, None], coords[None, None, :]
    args = [np.full((1, 1, 1), v) for v in (500.0, 500.0, size, 0.5, 0.3)]  # cy, cx, size, aspect, angle
    circle = _inside(1, yy, xx, *args).sum()
    rectangle = _inside(2, yy, xx, *args).sum()
    triangle = _inside(3, yy, xx, *args).sum()
    radius = 1.3 * size  # the triangle's circumradius
    assert circle == pytest.approx(math.pi * size**2, rel=0.01)
    assert rectangle == pytest.approx(4 * size * size * 0.5, rel=0.01)
    assert triangle == pytest.approx(3 * math.sqrt(3) / 4 * radius**2, rel=0.01)


def test_generating_a_thousand_images_is_fast() -> None:
    # CPU time of this process, so other work on a busy CI machine does not count;
    # generation is single-threaded numpy.
    start = time.process_time()
    ShapesDataset(1000, image_size=64)
    assert time.process_time() - start < 2.0


@pytest.mark.parametrize(
    "kwargs", [{"num_samples": -1}, {"image_size": 8}, {"noise": -0.1}, {"max_shapes": 0}]
)
def test_shapes_rejects_invalid_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ShapesDataset(**{"num_samples": 1, **kwargs})


# --------------------------------------------------------------------------- folder


@pytest.fixture
def folder(tmp_path: Path, shapes: ShapesDataset) -> Path:
    return write_folder_dataset(tmp_path / "data", shapes, 4)


def test_folder_round_trips_a_written_dataset(folder: Path, shapes: ShapesDataset) -> None:
    assert sorted(p.name for p in (folder / "images").iterdir()) == [f"{i:05d}.png" for i in range(4)]
    data = FolderDataset(folder)
    assert len(data) == 4
    for i in range(4):
        image, mask = data[i]
        assert image.dtype == torch.float32 and mask.dtype == torch.int64
        assert torch.equal(mask, shapes[i][1])
        assert (image - shapes[i][0]).abs().max() <= 2 / 255 + 1e-6  # 8-bit quantisation only


def test_folder_resizes_masks_with_nearest_neighbour(folder: Path) -> None:
    data = FolderDataset(folder, image_size=48, num_classes=4)
    image, mask = data[0]
    assert image.shape == (3, 48, 48) and mask.shape == (48, 48)
    original = set(np.unique(np.asarray(Image.open(folder / "masks" / "00000.png"))).tolist())
    assert set(torch.unique(mask).tolist()) <= original  # no blended, invented classes


def test_folder_reads_jpeg_and_ignores_hidden_files(folder: Path) -> None:
    picture = Image.open(folder / "images" / "00001.png")
    (folder / "images" / "00001.png").unlink()
    picture.save(folder / "images" / "00001.jpg")
    (folder / "images" / ".DS_Store").write_bytes(b"\0")
    data = FolderDataset(folder)
    assert [p.name for p, _ in data.pairs] == ["00000.png", "00001.jpg", "00002.png", "00003.png"]
    assert data[1][0].shape == (3, 32, 32)


def test_folder_reads_palette_and_16_bit_masks_as_class_indices(folder: Path) -> None:
    labels = np.asarray(Image.open(folder / "masks" / "00000.png"))
    palette = Image.fromarray(labels).convert("P")  # values stay the indices
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    palette.save(folder / "masks" / "00000.png")
    Image.fromarray(labels.astype(np.uint16)).save(folder / "masks" / "00001.png")
    data = FolderDataset(folder, num_classes=4)
    assert np.array_equal(data[0][1].numpy(), labels)
    assert np.array_equal(data[1][1].numpy(), np.asarray(Image.open(folder / "masks" / "00001.png")))


def _data_error(root: Path, **kwargs: object) -> FolderDataError:
    """The folder dataset's own error (vision imports no tipi engine; the Data permanence adds the key)."""
    with pytest.raises(FolderDataError) as info:
        FolderDataset(root, **kwargs)  # type: ignore[arg-type]
    return info.value


def test_folder_missing_root_names_the_path(tmp_path: Path) -> None:
    error = _data_error(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error) and "does not exist" in str(error)
    assert "images/" in (error.hint or "")


def test_folder_without_images_folder_or_images(tmp_path: Path) -> None:
    assert "no 'images' folder" in str(_data_error(tmp_path))
    (tmp_path / "images").mkdir()
    error = _data_error(tmp_path)
    assert "no image files" in str(error) and ".png" in (error.hint or "")


def test_folder_image_without_mask_names_the_file(folder: Path) -> None:
    (folder / "masks" / "00002.png").unlink()
    error = _data_error(folder)
    assert "00002.png" in str(error) and "no mask" in str(error)


def test_folder_mask_without_image_names_the_file(folder: Path) -> None:
    (folder / "images" / "00003.png").unlink()
    error = _data_error(folder)
    assert "00003.png" in str(error) and "no image" in str(error)


def test_folder_unreadable_image_is_reported(folder: Path) -> None:
    (folder / "images" / "00001.png").write_bytes(b"this is not a png")
    error = _data_error(folder)
    assert "00001.png" in str(error) and "not a readable image" in str(error)


def test_folder_non_image_file_is_reported(folder: Path) -> None:
    (folder / "images" / "notes.txt").write_text("hello")
    error = _data_error(folder)
    assert "notes.txt" in str(error) and ".jpg" in (error.hint or "")


def test_folder_rgb_mask_is_reported(folder: Path) -> None:
    Image.new("RGB", (32, 32)).save(folder / "masks" / "00000.png")
    assert "single-channel" in str(_data_error(folder))


def test_folder_checks_class_range_and_sizes_when_reading(folder: Path) -> None:
    Image.fromarray(np.full((32, 32), 7, dtype=np.uint8)).save(folder / "masks" / "00000.png")
    with pytest.raises(FolderDataError, match="holds class 7"):
        FolderDataset(folder, num_classes=4)[0]
    with pytest.raises(FolderDataError, match="holds class 7") as info:
        FolderDataset(folder, num_classes=4).check_masks()  # every mask, before training
    assert "masks hold [0, 1, 2, 3, 7]" in str(info.value) and "raise data.num_classes" in (info.value.hint or "")
    assert FolderDataset(folder, num_classes=2, mask_values=[0, 7])[0][1].max() == 1
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(folder / "masks" / "00001.png")
    with pytest.raises(FolderDataError, match="32x32 but its mask is 16x16"):
        FolderDataset(folder)[1]
    assert FolderDataset(folder, image_size=32)[1][1].shape == (32, 32)


# --------------------------------------------------------------------------- unet


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(("base", "depth", "height", "width"), [(16, 3, 64, 64), (8, 2, 32, 48), (4, 1, 6, 10)])
def test_unet_returns_logits_at_input_size(base: int, depth: int, height: int, width: int) -> None:
    model = UNet(in_channels=3, num_classes=5, base_channels=base, depth=depth)
    assert model(torch.randn(2, 3, height, width)).shape == (2, 5, height, width)


def test_unet_rejects_sizes_not_divisible_by_two_to_the_depth() -> None:
    with pytest.raises(ValueError, match="divisible by 2\\*\\*depth = 8"):
        UNet(depth=3)(torch.randn(1, 3, 60, 64))
    with pytest.raises(ValueError, match="expected input"):
        UNet(in_channels=3)(torch.randn(1, 1, 64, 64))


@pytest.fixture
def one_thread() -> Iterator[None]:
    # Tiny convolutions gain nothing from threads, and on a busy 2-core CI
    # machine two spinning threads make this test 10x slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.usefixtures("one_thread")
def test_unet_learns_a_small_batch(shapes: ShapesDataset) -> None:
    torch.manual_seed(0)
    model = UNet(base_channels=8, depth=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    images, masks = shapes.images[:8], shapes.masks[:8].long()
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# --------------------------------------------------------------------------- metrics


def test_confusion_matrix_matches_a_hand_computed_example() -> None:
    target = torch.tensor([[[0, 0, 1, 1], [2, 2, 2, 0]]])
    preds = torch.tensor([[[0, 1, 1, 1], [2, 2, 0, 0]]])
    metrics = ConfusionMatrix(4, class_names=CLASS_NAMES)
    metrics.update(preds, target)
    assert metrics.matrix.tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    result = metrics.compute()
    assert result["pixel_acc"] == pytest.approx(6 / 8)
    iou = {"background": 2 / 4, "circle": 2 / 3, "rectangle": 2 / 3}
    for name, value in iou.items():
        assert result[f"iou/{name}"] == pytest.approx(value)
    assert math.isnan(result["iou/triangle"])  # in neither target nor prediction
    assert result["mean_iou"] == pytest.approx(sum(iou.values()) / 3)
    assert result["dice"] == pytest.approx((4 / 5 + 4 / 5) / 2)  # foreground classes only


def test_confusion_matrix_accepts_logits_accumulates_and_resets() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 8, 8, generator=generator)
    target = torch.randint(0, 3, (4, 8, 8), generator=generator)
    whole = ConfusionMatrix(3)
    whole.update(logits.argmax(dim=1), target)
    parts = ConfusionMatrix(3)
    parts.update(logits[:2], target[:2])
    parts.update(logits[2:], target[2:])
    assert parts.matrix.dtype == torch.int64 and torch.equal(parts.matrix, whole.matrix)
    assert parts.matrix.sum() == target.numel()
    assert set(parts.compute()) == {"pixel_acc", "mean_iou", "dice", "iou/0", "iou/1", "iou/2"}
    parts.reset()
    assert parts.matrix.sum() == 0
    with pytest.raises(RuntimeError, match="before any pixel"):
        parts.compute()


def test_confusion_matrix_ignores_out_of_range_targets_and_checks_shapes() -> None:
    metrics = ConfusionMatrix(2)
    metrics.update(torch.tensor([[1, 1, 0]]), torch.tensor([[1, 255, 0]]))
    assert metrics.matrix.tolist() == [[1, 0], [0, 1]]
    assert metrics.compute()["pixel_acc"] == 1.0
    with pytest.raises(ValueError, match="channels"):
        metrics.update(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.update(torch.zeros(1, 2, 2), torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="class names"):
        ConfusionMatrix(2, class_names=["only one"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to detect host syncs")
def test_confusion_matrix_update_does_not_synchronise_the_device() -> None:
    metrics = ConfusionMatrix(4, device="cuda")
    logits = torch.randn(2, 4, 16, 16, device="cuda")
    target = torch.randint(0, 4, (2, 16, 16), device="cuda")
    torch.cuda.set_sync_debug_mode("error")
    try:
        metrics.update(logits, target)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert metrics.matrix.device.type == "cuda" and metrics.matrix.sum().item() == 512


# --------------------------------------------------------------------------- figures


def test_prediction_grid_layout_and_colours(tmp_path: Path, shapes: ShapesDataset) -> None:
    images, masks = shapes.images[:3], shapes.masks[:3]
    logits = torch.nn.functional.one_hot(masks.long(), 4).permute(0, 3, 1, 2).float()
    path = save_prediction_grid(images, masks, logits, tmp_path / "figs" / "grid.png")
    assert path == tmp_path / "figs" / "grid.png"
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary file left
    grid = np.asarray(Image.open(path))
    scale, gap = 4, 2  # 32 px images are enlarged to 128 px
    assert grid.shape == (3 * (32 * scale + gap) + gap, 3 * (32 * scale + gap) + gap, 3)
    colors = np.asarray(default_class_colors(4), dtype=np.uint8)
    tile_w = 32 * scale + gap
    truth = grid[gap : gap + 32 * scale : scale, gap + tile_w : gap + tile_w + 32 * scale : scale]
    prediction = grid[gap : gap + 32 * scale : scale, gap + 2 * tile_w : gap + 2 * tile_w + 32 * scale : scale]
    assert np.array_equal(truth, colors[masks[0].numpy()])
    assert np.array_equal(prediction, truth)


def test_prediction_grid_rejects_mismatched_inputs(tmp_path: Path, shapes: ShapesDataset) -> None:
    with pytest.raises(ValueError, match="masks and preds"):
        save_prediction_grid(shapes.images[:2], shapes.masks[:2], shapes.masks[:1], tmp_path / "g.png")
    assert not list(tmp_path.iterdir())


def test_metric_curves_are_written_atomically(tmp_path: Path) -> None:
    history = [{"epoch": e, "train/loss": 1.0 / e, "val/loss": 1.2 / e, "val/mean_iou": 0.3 * e} for e in (1, 2, 3)]
    path = tmp_path / "curves.png"
    path.write_bytes(b"old")
    save_metric_curves(history, path)
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.width > picture.height  # loss and mean_iou side by side
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]
    save_metric_curves([{"step": 1, "train/loss": 0.5}, {"step": 2, "train/loss": 0.4, "note": "x"}], path)
    with pytest.raises(ValueError, match="no record holds"):
        save_metric_curves(history, path, keys=["val/dice"])
    with pytest.raises(ValueError, match="nothing to plot"):
        save_metric_curves([], path)
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]
