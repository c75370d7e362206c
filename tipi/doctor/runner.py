"""Runs every check (concurrently: most of the time is spent waiting on child processes) and judges ``--require``."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from tipi.doctor.checks_devices import check_devices
from tipi.doctor.checks_env import check_output, check_torch, check_torchvision, check_versions
from tipi.doctor.checks_run import check_distributed, check_smoke
from tipi.doctor.checks_slurm import check_slurm
from tipi.doctor.checks_wandb import check_wandb
from tipi.doctor.context import DoctorContext, Options
from tipi.doctor.result import CheckResult, Status, failed

Check = Callable[[DoctorContext], list[CheckResult]]

# In the order of the table.
CHECKS: tuple[Check, ...] = (
    check_versions,
    check_torch,
    check_torchvision,
    check_devices,
    check_smoke,
    check_distributed,
    check_slurm,
    check_wandb,
    check_output,
)
# What --require accepts; each names the group of rows it demands.
REQUIRABLE = ("versions", "devices", "cuda", "mps", "smoke", "distributed", "nccl", "slurm", "wandb", "output")


def _run_one(check: Check, ctx: DoctorContext) -> list[CheckResult]:
    name = check.__name__.removeprefix("check_")
    start = time.monotonic()
    try:
        rows = check(ctx)
    except Exception as exc:  # noqa: BLE001 - a broken check is one failed row, not a dead doctor
        rows = [
            failed(
                name,
                f"the check itself failed: {type(exc).__name__}: {exc}",
                "please report this with the output of tipi-doctor --json",
                name,
            )
        ]
    seconds = time.monotonic() - start
    return [dataclasses.replace(row, seconds=seconds) for row in rows]


def run_checks(options: Options, checks: Sequence[Check] = CHECKS) -> list[CheckResult]:
    """Every check's rows, in table order."""
    ctx = DoctorContext(options)
    with ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="tipi-doctor") as pool:
        futures = [pool.submit(_run_one, check, ctx) for check in checks]
        return [row for future in futures for row in future.result()]


def unmet(results: Sequence[CheckResult], required: Sequence[str]) -> dict[str, list[CheckResult]]:
    """Each requirement not met, with the rows that say why.

    A requirement is met when at least one of its rows is ok and none failed;
    so ``--require cuda`` fails on a machine whose CUDA rows are all skipped.
    """
    missing: dict[str, list[CheckResult]] = {}
    for req in dict.fromkeys(required):
        rows = [r for r in results if req in r.groups]
        if not rows or any(r.status == Status.FAILED for r in rows) or not any(r.status == Status.OK for r in rows):
            missing[req] = [r for r in rows if r.status != Status.OK] or [
                failed(req, "no check reported on it", "", req)
            ]
    return missing
