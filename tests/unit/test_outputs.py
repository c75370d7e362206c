"""A refused config leaves no directory behind, and no directory the user named is ever removed."""

from __future__ import annotations

from pathlib import Path

from tipi._hydra import discard_if_untouched
from tipi.core.rundir import claim_fresh_dir


def _hydra_files(run: Path) -> None:
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    (run / "tipi.log").write_text("")


def test_a_claimed_directory_with_only_hydras_files_goes_with_the_parents_its_claim_made(tmp_path: Path) -> None:
    run = Path(claim_fresh_dir(str(tmp_path / "outputs" / "2026-12-02" / "10-00-00")))
    _hydra_files(run)
    assert discard_if_untouched(run)
    assert not (tmp_path / "outputs").exists(), "outputs/ and outputs/<date>/ were made by the claim"
    assert tmp_path.is_dir()


def test_a_parent_that_holds_other_runs_stays(tmp_path: Path) -> None:
    (tmp_path / "outputs" / "2026-12-02" / "09-00-00").mkdir(parents=True)
    run = Path(claim_fresh_dir(str(tmp_path / "outputs" / "2026-12-02" / "10-00-01")))
    _hydra_files(run)
    assert discard_if_untouched(run)
    assert sorted(p.name for p in (tmp_path / "outputs" / "2026-12-02").iterdir()) == ["09-00-00"]


def test_a_directory_the_user_named_or_one_tipi_wrote_into_stays(tmp_path: Path) -> None:
    named = tmp_path / "mine"
    _hydra_files(named)
    assert not discard_if_untouched(named) and named.is_dir()
    run = Path(claim_fresh_dir(str(tmp_path / "outputs" / "x" / "10-00-02")))
    _hydra_files(run)
    (run / "run.json").write_text("{}")
    assert not discard_if_untouched(run) and (run / "run.json").is_file()
