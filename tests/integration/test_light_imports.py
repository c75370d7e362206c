"""What stays cheap to import: checked in a fresh interpreter, where nothing else loaded torch first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, tipi_env
from tests.unit.test_params import BUILT_IN


def test_imports_stay_light() -> None:
    code = (
        "import sys, tipi.vision, tipi.vision.figures, tipi.vision.folder; "
        "heavy = sorted({'torch', 'matplotlib'} & set(sys.modules)); "
        "assert not heavy, f'importing tipi.vision.figures and .folder imported {heavy}'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_reading_tipis_own_targets_imports_none_of_their_modules() -> None:
    # --help and --cfg job read every target's signature: from the source, so they pay no import (nor torch)
    assert len(BUILT_IN) >= 8
    code = ("import sys\nfrom tipi.params import read_target\n"
            f"for t in {BUILT_IN!r}:\n"
            "    assert read_target(t, 'process' if '.processes.' in t else 'permanence') is not None, t\n"
            "loaded = [m for m in sys.modules if m.startswith(('torch', 'tipi.processes.', 'tipi.permanences.'))]\n"
            "assert not loaded, loaded\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(REPO), env=tipi_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
