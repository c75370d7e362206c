"""A bad value is refused before any job, by the key the user typed, with what is valid (issue 28).

Each test runs the real CLI in a subprocess (``cli``: ``python -X importtime -m
tipi``) and checks, as ``test_bad_input`` does: a non-zero exit, one message
naming the key, no traceback, no run record, metrics or checkpoint written.
The in-process tests (every parameter of every built-in target) are in
``tests/unit/test_checks_before_run.py``; these few prove the same through the
command line, where the config's references (``permanences.data: ${data}``)
and Hydra's own run directory are real.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.conftest import Cli
from tests.reliability.test_bad_input import FAST, assert_refused


@pytest.mark.parametrize(("override", "needles", "torch_free"), [
    ("seed=1.5", ("Error seed: expected int, got float 1.5",), True),
    ("data.batch_size=abc", ("Error data.batch_size: expected int, got str 'abc'",), True),
    ("data.num_classes=0", ("Error data.num_classes: must be at least 1, got 0",), True),
    ("run.objective_mode=maximize", ("Error run.objective_mode: unknown choice 'maximize'. Valid: max, min",
                                     "Did you mean 'max'?"), True),
    ("optimizer.lr=-1", ("Error optimizer.lr: must be a number >= 0 (e.g. 1e-3), got -1",), False),
], ids=["seed", "data.batch_size", "data.num_classes", "run.objective_mode", "optimizer.lr"])
def test_a_bad_value_names_the_key_the_user_typed(cli: Cli, tmp_path: Path, override: str,
                                                  needles: tuple[str, ...], torch_free: bool) -> None:
    result = cli(*FAST, override)
    assert_refused(result, *needles, cwd=tmp_path, torch_free=torch_free)
    assert "permanences." not in result.stderr


def test_a_unet_too_deep_for_the_images_is_refused_before_it_is_built(cli: Cli, tmp_path: Path) -> None:
    """``model.depth=9`` at 32 px: once ~70 s building a 9-level U-Net, a checkpoint, then a shape error."""
    result = cli(*FAST, "model=unet", "model.depth=9")
    assert_refused(result, "Error model.depth: one batch of the configured shape [1, 3, 32, 32] does not pass "
                   "through the model", "divisible by 2**depth = 512",
                   "data.image_size=32, model.in_channels=3, data.num_classes=4", cwd=tmp_path, torch_free=False)
    assert result.seconds < 30, f"took {result.seconds:.1f} s: the network must not be built"


def test_a_torch_nn_model_from_the_config_is_probed_too(cli: Cli, tmp_path: Path) -> None:
    """A model of another library (torch.nn's own modules) gets the same probe: its output channels vs the classes."""
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "convs.yaml").write_text(
        "_target_: torch.nn.Sequential\n"
        "_args_:\n"
        "  - {_target_: torch.nn.Conv2d, in_channels: 3, out_channels: 8, kernel_size: 3, padding: 1}\n"
        "  - {_target_: torch.nn.ReLU}\n"
        "  - {_target_: torch.nn.Conv2d, in_channels: 8, out_channels: 3, kernel_size: 1}\n"
    )
    result = cli("--config-dir", "conf", *FAST, "model=convs")
    assert_refused(result, "Error model: the model gives 3 output channel(s) [1, 3, 32, 32], but the data has 4 "
                   "classes (data.num_classes=4)", cwd=tmp_path, torch_free=False)


def test_a_batch_larger_than_the_training_set_warns_once_and_trains(cli: Cli, tmp_path: Path) -> None:
    result = cli(*FAST, "data.batch_size=100000", "processes.train.epochs=2", "~processes.result",
                 "hydra.run.dir=run")
    assert result.returncode == 0, result.output
    warning = ("data.batch_size=100000 is larger than the training set (64 samples): each epoch trains 1 batch "
               "of 64 samples")
    assert result.output.count(warning) == 1, result.output
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
