"""A single run composes its config once (tipi._hydra.compose_once), and runs exactly what Hydra would have composed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import tipi_env

# Runs ``python -m tipi ARGS`` with Hydra's composition counted; with ``--hydra-only``, with tipi's
# compose-once left out (Hydra's own two compositions), to compare what each writes.
_COUNTING = textwrap.dedent(
    """
    import atexit, runpy, sys
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    compose = ConfigLoaderImpl._load_configuration_impl
    count = [0]

    def counted(*args, **kwargs):
        count[0] += 1
        return compose(*args, **kwargs)

    ConfigLoaderImpl._load_configuration_impl = counted
    atexit.register(lambda: print(f"compositions: {count[0]}", file=sys.stderr))
    args = sys.argv[1:]
    if args[:1] == ["--hydra-only"]:
        import tipi._hydra as seam
        seam.install_for_command_line = lambda argv: seam.install("params", "errors")  # all but compose_once
        args = args[1:]
    sys.argv = ["tipi", *args]
    runpy.run_module("tipi", run_name="__main__", alter_sys=True)
    """
)

# The gate refuses this before anything is built (no torch), after Hydra composed and wrote .hydra/.
REFUSED = ("progress=none", "processes.train.epochs=0")


def _tipi(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _COUNTING, *args], cwd=tmp_path, env=tipi_env(), capture_output=True, text=True,
        timeout=120, stdin=subprocess.DEVNULL,
    )


def _compositions(proc: subprocess.CompletedProcess[str]) -> int:
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("compositions: ")]
    return int(line.split()[-1])


def test_a_single_run_composes_once_and_writes_what_hydra_would(tmp_path: Path) -> None:
    ours = _tipi(tmp_path, "hydra.run.dir=ours", *REFUSED)
    hydras = _tipi(tmp_path, "--hydra-only", "hydra.run.dir=hydras", *REFUSED)
    for proc in (ours, hydras):
        assert proc.returncode == 1
        assert "Error processes.train.epochs: must be at least 1, got 0" in proc.stderr
    assert _compositions(ours) == 1
    assert _compositions(hydras) == 2
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        mine = (tmp_path / "ours" / ".hydra" / name).read_text().replace("ours", "DIR")
        theirs = (tmp_path / "hydras" / ".hydra" / name).read_text().replace("hydras", "DIR")
        assert mine == theirs, name
    assert "mode: RUN" in (tmp_path / "ours" / ".hydra" / "hydra.yaml").read_text()


def test_a_config_that_makes_itself_a_multirun_still_sweeps(tmp_path: Path) -> None:
    # hydra.mode=MULTIRUN without -m: with a sweep (Hydra's own get_mode) and without one (the kept
    # composition says MULTIRUN and is not used for a single run).
    # (a multirun checks every job before the first starts: the refusal counts the jobs it swept)
    swept = _tipi(tmp_path, "hydra.mode=MULTIRUN", "hydra.sweep.dir=swept", "seed=1,2", *REFUSED)
    single = _tipi(tmp_path, "hydra.mode=MULTIRUN", "hydra.sweep.dir=single", "seed=3", *REFUSED)
    assert "2 of 2 jobs would be refused" in swept.stderr, swept.stderr
    assert "1 of 1 jobs would be refused" in single.stderr, single.stderr
    assert (tmp_path / "swept" / "multirun.yaml").is_file(), "a directory the user named stays"
    for proc in (swept, single):
        assert "must be at least 1, got 0" in proc.stderr


def test_a_sweep_without_multirun_is_refused_as_hydra_refuses_it(tmp_path: Path) -> None:
    proc = _tipi(tmp_path, "seed=1,2", *REFUSED)
    assert proc.returncode != 0
    assert "Ambiguous value for argument 'seed=1,2'" in proc.stderr
    assert not (tmp_path / "outputs").exists()
