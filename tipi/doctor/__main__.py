"""``tipi-doctor`` / ``python -m tipi.doctor``: check this machine; exit 1 when a ``--require`` is not met."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from tipi.core.errors import did_you_mean
from tipi.doctor.context import Options
from tipi.doctor.report import as_json, write_json, write_plain, write_table, write_unmet
from tipi.doctor.result import Status
from tipi.doctor.runner import REQUIRABLE, run_checks, unmet


def _requirement(value: str) -> str:
    value = value.strip().lower()
    if value not in REQUIRABLE:
        close = did_you_mean(value, REQUIRABLE)
        hint = f" Did you mean '{close}'?" if close else ""
        raise argparse.ArgumentTypeError(f"'{value}' is not a check.{hint} Valid: {', '.join(REQUIRABLE)}")
    return value


def _seconds(value: str) -> float:
    seconds = float(value)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value}")
    return seconds


def parser() -> argparse.ArgumentParser:
    """The command line (no Hydra here: the doctor takes no overrides)."""
    p = argparse.ArgumentParser(
        prog="tipi-doctor",
        description="Check whether this machine can run tipi: packages, torch build, devices, a smoke training "
        "on each device, distributed all-reduce, SLURM, WandB, output folders.",
        epilog="Exit status: 0, or 1 when a --require'd check is not ok (its remedy goes to stderr); "
        "with --strict, 1 when any check failed. See docs/doctor.md.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document (for scripts)")
    p.add_argument(
        "--require",
        action="append",
        default=[],
        type=_requirement,
        metavar="CHECK",
        help=f"exit 1 unless this check is ok (repeatable): {', '.join(REQUIRABLE)}",
    )
    p.add_argument(
        "--no-smoke",
        action="store_true",
        help="skip the smoke training and the all-reduces (the steps that run torch work)",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=60.0,
        metavar="S",
        help="seconds any one step may take before it is stopped (default 60)",
    )
    p.add_argument(
        "--net-timeout", type=_seconds, default=5.0, metavar="S", help="seconds to wait for WandB's server (default 5)"
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when any check failed, required or not")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the doctor; the exit status says whether the required checks passed."""
    args = parser().parse_args(argv)
    start = time.monotonic()
    results = run_checks(Options(timeout=args.timeout, smoke=not args.no_smoke, net_timeout=args.net_timeout))
    seconds = time.monotonic() - start
    missing = unmet(results, args.require)
    if args.json:
        write_json(as_json(results, missing, args.require, seconds), sys.stdout)
    elif sys.stdout.isatty():
        write_table(results, seconds, sys.stdout)
    else:
        write_plain(results, seconds, sys.stdout)
    sys.stdout.flush()
    write_unmet(missing, sys.stderr)
    if missing or (args.strict and any(r.status == Status.FAILED for r in results)):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
