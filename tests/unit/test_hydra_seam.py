"""The Hydra seam (tipi._hydra): a canary per private callable, and install/uninstall that restore Hydra exactly.

A Hydra upgrade that renames or reshapes a callable tipi wraps or calls fails
``test_private_callable_still_looks_as_tipi_expects[<its name>]``, not a user's sweep.
"""

from __future__ import annotations

import inspect

import hydra
import pytest

from tipi._hydra import HydraVersionError, install, installed, installed_parts, uninstall
from tipi._hydra import patches as seam
from tipi._hydra.patches import PATCHES, REACHED, PrivateCallable


@pytest.mark.parametrize("entry", PATCHES + REACHED, ids=lambda e: e.where)
def test_private_callable_still_looks_as_tipi_expects(entry: PrivateCallable) -> None:
    assert entry.problem() is None, f"{entry.problem()}: tipi uses it because {entry.why}"


def test_the_canary_names_a_changed_signature() -> None:
    changed = PrivateCallable("hydra._internal.hydra:Hydra.get_mode", ("self", "config_name", "overrides", "extra"), "")
    assert "takes (self, config_name, overrides), tipi forwards (self, config_name, overrides, extra)" in str(
        changed.problem())
    gone = PrivateCallable("hydra._internal.hydra:Hydra.get_mood", ("self",), "")
    assert "is gone" in str(gone.problem())


def _current() -> dict[str, object]:
    return {patch.where: patch.resolve()[2] for patch in PATCHES}


def test_install_wraps_every_patch_point_and_uninstall_puts_hydras_own_back() -> None:
    before = _current()
    assert installed_parts() == set()
    install("compose_once", "params", "errors")
    install("compose_once", "params", "errors")  # idempotent: one wrapper, not two
    during = _current()
    assert installed_parts() == {"compose_once", "params", "errors"}
    for where, value in during.items():
        assert value is not before[where], where
        func = value.__func__ if isinstance(value, staticmethod) else value
        original = before[where]
        assert func.__tipi_wraps__ is (original.__func__ if isinstance(original, staticmethod) else original)
    uninstall()
    after = _current()
    for where, value in after.items():
        assert value is before[where] or (  # a staticmethod is put back as a staticmethod of the same function
            isinstance(value, staticmethod) and value.__func__ is before[where].__func__), where
    assert installed_parts() == set()


def test_installed_restores_what_was_there_before() -> None:
    install("errors")
    try:
        with installed("params"):
            assert installed_parts() == {"params", "errors"}
        assert installed_parts() == {"errors"}
    finally:
        uninstall()


def test_an_untested_hydra_is_refused_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hydra, "__version__", "1.4.0")
    with pytest.raises(HydraVersionError, match=r"hydra-core 1.4.0 is installed; tipi's Hydra seam is tested on 1\.3"):
        install("errors")
    assert installed_parts() == set()
    monkeypatch.setenv(seam.UNTESTED_OK, "1")
    install("errors")  # the canaries pass on this Hydra, so it may try
    assert installed_parts() == {"errors"}
    uninstall()


def test_an_untested_hydra_whose_callable_changed_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hydra, "__version__", "1.4.0")
    monkeypatch.setenv(seam.UNTESTED_OK, "1")
    from hydra._internal.hydra import Hydra

    def get_mode(self: object, config_name: str, overrides: list[str], strict: bool) -> None: ...

    monkeypatch.setattr(Hydra, "get_mode", get_mode)
    with pytest.raises(HydraVersionError, match=r"Hydra\.get_mode takes \(self, config_name, overrides, strict\)"):
        install("compose_once")


def test_every_wrapper_forwards_the_signature_of_what_it_wraps() -> None:
    """A wrapper takes the parameters of the callable it replaces, so Hydra's own calls reach it unchanged."""
    for patch in PATCHES:
        original = patch.resolve()[2]
        original = original.__func__ if isinstance(original, staticmethod) else original
        wrapper = patch.wrapper(original)
        names = tuple(inspect.signature(wrapper).parameters)
        assert names == patch.params, (patch.where, names)
