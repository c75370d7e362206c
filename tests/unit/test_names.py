"""Old public names keep working, with a DeprecationWarning that names the new one (README: Words)."""

from __future__ import annotations

import contextlib
import importlib

import pytest


@pytest.mark.parametrize(("module", "old", "new_module", "new"), [
    ("tipi", "ProcessWithParams", "tipi.core.process", "ProcessSpec"),
    ("tipi.core.process", "ProcessWithParams", "tipi.core.process", "ProcessSpec"),
    ("tipi.trackers", "Outcome", "tipi.trackers.base", "RunOutcome"),
    ("tipi.callbacks", "SweepSummary", "tipi._hydra.callbacks", "MultirunSummary"),
    ("tipi.callbacks", "OutputDirCheck", "tipi._hydra.callbacks", "OutputDirCheck"),
    ("tipi.permanences.logger", "MetricsLogger", "tipi.permanences.metrics_logger", "MetricsLogger"),
    ("tipi.distributed.callback", "SharedRunDir", "tipi._hydra.callbacks", "SharedRunDir"),
])
def test_an_old_name_is_the_new_object_with_a_warning(module: str, old: str, new_module: str, new: str) -> None:
    with pytest.warns(DeprecationWarning, match=new):
        value = getattr(importlib.import_module(module), old)
    assert value is getattr(importlib.import_module(new_module), new)


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        _ = importlib.import_module("tipi.callbacks").NoSuchThing


@pytest.mark.parametrize(("old", "new"), [("BasicLauncher", "InProcessLauncher"),
                                          ("LocalLauncher", "SubmititLocalLauncher")])
def test_an_old_launcher_target_is_the_new_launcher_with_a_warning(old: str, new: str) -> None:
    launchers = importlib.import_module("hydra_plugins.tipi_launcher.launchers")
    assert issubclass(getattr(launchers, old), getattr(launchers, new))
    # the submitit launcher needs its parameters (TypeError): the warning came first
    with pytest.warns(DeprecationWarning, match=f"{old} is now {new}"), contextlib.suppress(TypeError):
        getattr(launchers, old)()
