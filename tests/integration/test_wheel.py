"""tipi works from a non-editable wheel install, from any working directory."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from tests.conftest import REPO, read_json, run_dirs, tipi_env


def test_wheel_install_runs_from_any_directory(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheel_dir), str(REPO)], check=True, capture_output=True, timeout=300)
    [wheel] = wheel_dir.glob("tipi-*.whl")
    # A bare interpreter environment: the wheel unpacked into its own site directory, the
    # dependencies reachable on sys.path, and no editable finder (its .pth is not processed).
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "tipi" / "conf" / "config.yaml").is_file()
    deps = sysconfig.get_paths()["purelib"]
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = tipi_env(PYTHONPATH=f"{site}:{deps}")
    probe = subprocess.run([sys.executable, "-S", "-c", "import tipi; print(tipi.__file__)"], cwd=workdir,
                           env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip().startswith(str(site))
    subprocess.run([sys.executable, "-S", "-m", "tipi", "+experiment=seg", "debug=fast", "progress=none"],
                   cwd=workdir, env=env, capture_output=True, text=True, check=True, timeout=300)
    [run_dir] = run_dirs(workdir / "outputs")
    assert read_json(run_dir / "run.json")["status"] == "succeeded"
