"""``tipi-doctor``: says whether this machine can run tipi, and proves its GPU path.

Run ``tipi-doctor`` (or ``python -m tipi.doctor``) on a new machine or at the
start of a job script (``tipi-doctor --require cuda``). Importing this package
imports no torch: every step that needs torch runs in a child process
(:mod:`tipi.doctor.worker`), bounded by a timeout.
"""

from __future__ import annotations

from tipi.doctor.context import Options
from tipi.doctor.result import CheckResult, Status
from tipi.doctor.runner import REQUIRABLE, run_checks, unmet

__all__ = ["REQUIRABLE", "CheckResult", "Options", "Status", "run_checks", "unmet"]
