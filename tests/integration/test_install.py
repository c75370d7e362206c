"""Every way of installing works the same: pip's default editable install finds tipi's launchers."""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, read_json, run_dirs

LOAD_ONLY = ("debug=fast", "model=unet_small", "progress=none", "scheduler=none", "~processes.train",
             "~processes.validate", "~processes.test", "~processes.result")


@pytest.fixture(scope="module")
def default_editable_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with tipi installed by plain ``pip install -e .`` (pip's default, PEP 660, editable mode).

    Its dependencies are the ones already installed beside this interpreter (a path file points at
    them, so nothing is downloaded); tipi itself is installed anew, without ``editable_mode=compat``.
    """
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    Path(target, "base.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           "--no-build-isolation", "-e", str(REPO)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    finders = list(Path(target).glob("__editable___tipi_*_finder.py"))
    assert finders, "pip's default editable mode installs an import hook, not a path entry"
    return python


def run_in(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the repository is not on the path
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", NO_COLOR="1", TERM="dumb")
    return subprocess.run([str(python), "-m", "tipi", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["local", "submitit_local"])
def test_a_plain_editable_install_runs_multiruns_with_every_local_launcher(default_editable_venv: Path,
                                                                          tmp_path: Path, launcher: str) -> None:
    proc = run_in(default_editable_venv, tmp_path, "-m", *LOAD_ONLY, f"launcher={launcher}", "seed=1,2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Unknown plugin class" not in proc.stderr
    jobs = run_dirs(tmp_path / "multirun")
    assert len(jobs) == 2
    assert sorted(read_json(job / "run.json")["seed"] for job in jobs) == [1, 2]
    assert all(read_json(job / "run.json")["status"] == "succeeded" for job in jobs)
