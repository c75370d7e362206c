"""Bad input gets one clear error and nothing is half-written.

Each test runs the real CLI (``python -X importtime -m tipi``) in a subprocess
and checks: a non-zero exit, one message naming the key or file, no
traceback, no run record, metrics or checkpoint written (an existing run
directory is left as it was), and, where the mistake can be found without
torch, an answer that never imported torch (what keeps it fast; the time
itself is measured by ``python -m benchmarks``, not bounded here). Mistakes
inside the model node need torch to be found.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import Cli, CliResult, snapshot

FAST = ("debug=fast", "model=unet_small", "progress=none")
# debug=fast sizes the shapes data (num_train, ...), which a folder has not: a small folder run instead.
FOLDER = ("progress=none", "model=unet_small", "data=folder", "data.image_size=32", "data.batch_size=4",
          "processes.train.epochs=1")


def assert_refused(result: CliResult, *needles: str, cwd: Path | None, torch_free: bool = True) -> None:
    """Non-zero exit, one message holding ``needles``, no traceback, nothing written, fast enough.

    ``cwd``: where no run record, metrics or checkpoint may appear (None when
    the test compares an existing run directory's ``snapshot`` instead).
    """
    assert result.returncode != 0, result.output
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in:\n{result.stderr}"
    assert "Traceback" not in result.output, result.output
    assert sum(line.startswith("Error") for line in result.stderr.splitlines()) <= 1, result.stderr
    if cwd is not None:
        written = [p for name in ("run.json", "metrics.jsonl", "*.pt") for p in cwd.rglob(name)]
        assert not written, f"a refused run wrote {written}"
    # Mistakes inside the model / optimizer nodes can only be found by importing
    # their modules, torch among them: for those, "before the run" (nothing
    # written, above) is asserted; for every other one, that torch stayed out.
    if torch_free:
        assert "torch" not in result.imported, "found without torch, so torch must not be imported"


def test_unknown_config_group_option_lists_the_valid_options(cli: Cli, tmp_path: Path) -> None:
    """an unknown config-group option (``model=unett``), with the valid options listed."""
    result = cli("model=unett")
    assert_refused(result, "Error model: unknown option 'unett'. Valid: unet, unet_small", "Did you mean 'unet'?",
                   cwd=tmp_path)
    assert "search path" not in result.stderr.lower()


@pytest.mark.parametrize(("override", "key", "hint", "torch_free"), [
    ("+processes.bogus._target_=no.such.Thing", "processes.bogus._target_", "no.such.Thing", True),
    ("model._target_=tipi.vision.unet.UNett", "model._target_", "Did you mean 'tipi.vision.unet.UNet'?", False),
], ids=["process", "model"])
def test_target_that_does_not_import(cli: Cli, tmp_path: Path, override: str, key: str, hint: str,
                                        torch_free: bool) -> None:
    """a ``_target_`` that does not import, in a process and in the model node."""
    result = cli(*FAST, override)
    assert_refused(result, f"Error {key}:", hint, cwd=tmp_path, torch_free=torch_free)


@pytest.mark.parametrize(("override", "key", "hint", "torch_free"), [
    ("+processes.train.epoch=3", "processes.train.epoch", "Did you mean 'epochs'?", True),
    ("+model.base_channel=8", "model.base_channel", "Did you mean 'base_channels'?", False),
], ids=["process", "model"])
def test_parameter_the_target_does_not_take(cli: Cli, tmp_path: Path, override: str, key: str, hint: str,
                                               torch_free: bool) -> None:
    """a parameter a target does not take, with the valid ones and a guess."""
    result = cli(*FAST, override)
    assert_refused(result, f"Error {key}: unknown parameter", hint, cwd=tmp_path, torch_free=torch_free)


@pytest.mark.parametrize(("overrides", "message", "hint"), [
    (("+permanences.extra._target_=tipi.permanences.data.FolderData",),
     "permanences.extra.root: missing required parameter 'root'", "+permanences.extra.root=..."),
    (("data=folder",), "data.root: is required but not set", "on the command line: data.root=..."),
], ids=["not-given", "left-as-???"])
def test_required_parameter_missing(cli: Cli, tmp_path: Path, overrides: tuple[str, ...], message: str,
                                       hint: str) -> None:
    """a required parameter missing (not in the node, or a ``???`` never set)."""
    result = cli("progress=none", *overrides)
    assert_refused(result, f"Error {message}", hint, cwd=tmp_path)


@pytest.mark.parametrize(("override", "key", "torch_free"), [
    ("processes.train.epochs=abc", "processes.train.epochs", True),
    ("model.depth=abc", "model.depth", False),
], ids=["process", "model"])
def test_value_of_the_wrong_type(cli: Cli, tmp_path: Path, override: str, key: str, torch_free: bool) -> None:
    """a value of the wrong type names the key, the expected type and the value."""
    result = cli(*FAST, override)
    assert_refused(result, f"Error {key}: expected int, got str 'abc'", cwd=tmp_path, torch_free=torch_free)


def test_process_asks_for_a_permanence_that_is_not_configured(cli: Cli, tmp_path: Path) -> None:
    """a process asking for a permanence that is not configured; the configured ones are listed."""
    result = cli(*FAST, "permanences.data=null")
    assert_refused(result, "Error processes.load: process 'load' needs permanence 'data'",
                   "Configured: device, hparams, progress, logger, network", cwd=tmp_path)


def test_malformed_override(cli: Cli, tmp_path: Path) -> None:
    """a malformed override is named, with what is wrong in it."""
    result = cli(*FAST, "seed=[1,")
    assert_refused(result, "Error seed: cannot parse the override 'seed=[1,'", cwd=tmp_path)


@pytest.mark.parametrize(("override", "key"), [
    ("run.name=${nope}", "run.name"),
    ("processes.train.epochs=${nope}", "processes.train.epochs"),
    ("data.batch_size=${data.nope}", "data.batch_size"),
], ids=["top-level", "process", "permanence"])
def test_interpolation_to_a_missing_key(cli: Cli, tmp_path: Path, override: str, key: str) -> None:
    """an interpolation to a missing key names the key that holds it."""
    result = cli(*FAST, override)
    assert_refused(result, f"Error {key}: cannot resolve: Interpolation key", "not found", cwd=tmp_path)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.parametrize(("overrides", "needles"), [
    (("device=cuda:7",), ("Error device: 'cuda:7' does not exist on this machine. Available: cpu",)),
    (("device=tpu",), ("Error device: 'tpu' is not a device. Valid: auto, cpu, cuda, cuda:N, mps",)),
    (("+experiment=seg", "device=cuda:1"), ("Error device: 'cuda:1' does not exist", "Available: cpu")),
], ids=["cuda:7", "tpu", "seg-cuda:1"])
def test_device_that_does_not_exist(cli: Cli, tmp_path: Path, overrides: tuple[str, ...],
                                       needles: tuple[str, ...]) -> None:
    """``device=cuda:7`` and ``device=tpu``; and (issue #3) ``+experiment=seg device=cuda:1`` here."""
    wanted = overrides[-1].split(":")[-1]
    if wanted.isdigit() and _gpu_count() > int(wanted):
        pytest.skip(f"this machine has a {overrides[-1]}")
    result = cli(*overrides, "progress=none")
    # On a machine with a GPU, telling cuda:7 from cuda:0 needs torch; without one it must not.
    assert_refused(result, *needles, cwd=tmp_path, torch_free=_gpu_count() == 0)


@pytest.mark.parametrize("case", ["empty-dir", "no-such-dir", "other-model", "other-model-same-dir"])
def test_resume_a_directory_without_a_run_or_with_another_model(cli: Cli, tmp_path: Path, case: str,
                                                                   copy_run: Callable[[str], Path]) -> None:
    """``resume=`` a directory that holds no run (left untouched), or a checkpoint of another model."""
    if case in ("empty-dir", "no-such-dir"):
        target = tmp_path / "elsewhere" / "nothing"
        if case == "empty-dir":
            target.mkdir(parents=True)
        result = cli(f"resume={target}")
        needle = "holds no tipi run" if case == "empty-dir" else "is not a directory"
        assert_refused(result, f"Error resume: '{target}' {needle}", cwd=tmp_path)
        assert (list(target.iterdir()) == []) if case == "empty-dir" else not target.exists()
        return
    run = copy_run("run")
    before = snapshot(run)
    if case == "other-model":  # the stored config and the checkpoint disagree
        stored = run / ".hydra" / "config.yaml"
        stored.write_text(stored.read_text().replace("base_channels: 8", "base_channels: 16"))
        result = cli(f"resume={run}")
        assert_refused(result, "Error resume:", "last.pt holds a different model", "base_channels': 8",
                       "base_channels': 16", cwd=None)
    else:  # a fresh run in that directory, with another model: the directory holds another run
        result = cli(*FAST, "model=unet", f"hydra.run.dir={run}")
        assert_refused(result, f"Error hydra.run.dir: '{run}' holds another run", f"resume={run}", cwd=None)
    assert snapshot(run) == before


@pytest.mark.parametrize("damage", ["empty", "random-bytes", "truncated"])
def test_truncated_or_corrupt_checkpoint(cli: Cli, tmp_path: Path, damage: str,
                                            copy_run: Callable[[str], Path]) -> None:
    """a ``last.pt`` of zero bytes, of random bytes, or cut in half is refused and left as it is."""
    run = copy_run("run")
    last = run / "checkpoints" / "last.pt"
    good = last.read_bytes()
    last.write_bytes({"empty": b"", "random-bytes": os.urandom(4096), "truncated": good[: len(good) // 2]}[damage])
    before = snapshot(run)
    result = cli(f"resume={run}")
    assert_refused(result, f"Error resume: {last} cannot be loaded", "truncated or corrupt", "best.pt",
                   cwd=None)
    assert snapshot(run) == before, "the damaged file and the run's record must be left as they were"


def _folder(root: Path, case: str) -> None:
    """A data folder with one thing wrong with it (``case``)."""
    from tipi.vision.folder import write_folder_dataset
    from tipi.vision.shapes import ShapesDataset

    if case == "missing-root":
        return
    root.mkdir()
    if case == "empty-root":
        return
    write_folder_dataset(root, ShapesDataset(6, image_size=16, seed=1), 6)
    if case == "no-images":
        shutil.rmtree(root / "images")
        (root / "images").mkdir()
    elif case == "non-image-files":
        (root / "images" / "notes.txt").write_text("not an image")
    elif case == "mask-without-image":
        (root / "images" / "00003.png").unlink()


@pytest.mark.parametrize(("case", "message"), [
    ("missing-root", "does not exist"),
    ("empty-root", "no 'images' folder"),
    ("no-images", "no image files"),
    ("non-image-files", "holds files that are not images: notes.txt"),
    ("mask-without-image", "1 mask(s)"),
])
def test_folder_data_that_cannot_be_read(cli: Cli, tmp_path: Path, case: str, message: str) -> None:
    """``data=folder`` whose root does not exist, holds no images, holds non-image files (issue #3:
    or is empty, or has a mask without an image)."""
    root = tmp_path / "data"
    _folder(root, case)
    result = cli(*FOLDER, f"data.root={root}")
    assert_refused(result, "Error data.root:", message, cwd=tmp_path)
    if case == "mask-without-image":
        assert "00003.png" in result.stderr


def test_folder_data_that_is_well_formed_trains(cli: Cli, tmp_path: Path) -> None:
    """``data=folder`` on a folder the test writes trains."""
    from tipi.vision.folder import write_folder_dataset
    from tipi.vision.shapes import ShapesDataset

    root = write_folder_dataset(tmp_path / "data", ShapesDataset(20, image_size=32, seed=1), 20)
    result = cli(*FOLDER, f"data.root={root}", "hydra.run.dir=run")
    assert result.returncode == 0, result.output
    run = tmp_path / "run"
    assert (run / "checkpoints" / "last.pt").is_file()
    assert (run / "test_metrics.json").is_file()
    assert '"status": "succeeded"' in (run / "run.json").read_text()


@pytest.mark.parametrize("mode", ["run", "multirun"])
def test_output_directory_that_cannot_be_written(cli: Cli, tmp_path: Path, mode: str) -> None:
    """an output directory that cannot be written (here: below a regular file; works as root too)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    if mode == "run":
        result = cli(*FAST, f"hydra.run.dir={blocker}/run")
        key = "hydra.run.dir"
    else:
        result = cli("-m", *FAST, f"hydra.sweep.dir={blocker}/sweep", "seed=1,2")
        key = "hydra.sweep.dir"
    assert_refused(result, f"Error {key}: the output directory '{blocker}", "cannot be written", cwd=tmp_path)
