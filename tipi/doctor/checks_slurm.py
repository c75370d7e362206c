"""The SLURM check: the commands, the partitions and their GPUs, the SBATCH_* settings, accounting."""

from __future__ import annotations

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tipi.core.errors import did_you_mean
from tipi.doctor.context import DoctorContext
from tipi.doctor.procs import ChildResult, run_command
from tipi.doctor.result import CheckResult, failed, ok, skipped

COMMANDS = ("sinfo", "sbatch", "sacct")
# Each SLURM command gets this long at most (or the doctor's --timeout, if shorter): a controller that
# answers, answers in well under a second; one that is down would make sinfo wait its own ~10 s.
CALL_S = 2.0
# What sinfo/sacct say when SLURM is installed but its controller or database does not answer.
_NO_CONTROLLER = ("Unable to contact slurm controller", "Connection refused", "Problem talking to the database")


@dataclass
class Partition:
    """One partition as ``sinfo`` lists it (summed over its node lines)."""

    avail: str
    nodes: int = 0
    gres: set[str] = field(default_factory=set)


def _partitions(sinfo_out: str) -> dict[str, Partition]:
    """``sinfo -h -o '%P|%a|%D|%G'`` lines -> partition name (default marked ``*``) -> what it has."""
    parts: dict[str, Partition] = {}
    for line in sinfo_out.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4:
            continue
        name, avail, nodes, gres = fields
        part = parts.setdefault(name, Partition(avail))
        part.nodes += int(nodes) if nodes.isdigit() else 0
        # "gpu:a100:4(S:0-1)": the socket binding is noise here
        gres = re.sub(r"\(S:[^)]*\)", "", gres)
        part.gres.update(g for g in gres.split(",") if g and g != "(null)")
    return parts


def _describe(parts: dict[str, Partition]) -> str:
    return "; ".join(
        f"{name} ({p.avail}, {p.nodes} node(s), {', '.join(sorted(p.gres)) or 'no GPUs'})" for name, p in parts.items()
    )


def _settings_problem(names: list[str]) -> str | None:
    wanted = os.environ.get("SBATCH_PARTITION")
    if not wanted or wanted in names:
        return None
    close = did_you_mean(wanted, names)
    hint = f" Did you mean '{close}'?" if close else ""
    return f"SBATCH_PARTITION={wanted} is not a partition here (there are: {', '.join(names)}).{hint}"


def _settings() -> str:
    keys = ("SBATCH_PARTITION", "SBATCH_ACCOUNT", "SLURM_JOB_ID")
    return ", ".join(f"{k}={os.environ[k]}" for k in keys if os.environ.get(k)) or "no SBATCH_PARTITION/ACCOUNT set"


def _timeout(ctx: DoctorContext) -> float:
    return min(ctx.options.timeout, CALL_S)


def _unanswered(command: str, outcome: ChildResult, limit: float) -> str:
    """``installed, no controller answers (...)`` for a command that timed out or could not connect."""
    error = outcome.error or ""
    if outcome.timed_out:
        return f"installed, no controller answers ({command}: no answer within {limit:g} s)"
    if any(sign in error for sign in _NO_CONTROLLER):
        return f"installed, no controller answers ({command}: {error})"
    return f"{command} does not answer: {error}"


def _cluster_row(ctx: DoctorContext, outcome: ChildResult) -> CheckResult:
    if outcome.error:
        return failed(
            "slurm",
            _unanswered("sinfo", outcome, _timeout(ctx)),
            "is the controller up? try `scontrol ping`; ask the cluster admins",
            "slurm",
        )
    parts = _partitions(outcome.stdout)
    names = [name.rstrip("*") for name in parts]
    problem = _settings_problem(names)
    if problem:
        return failed("slurm", problem, "unset SBATCH_PARTITION or set it to one of the partitions", "slurm")
    if not any(part.avail == "up" for part in parts.values()):
        return failed(
            "slurm",
            f"no partition is up: {_describe(parts) or 'none listed'}",
            "ask the cluster admins (sinfo -R lists why nodes are down)",
            "slurm",
        )
    return ok("slurm", f"{_describe(parts)}; {_settings()}", "slurm")


def _accounting_row(ctx: DoctorContext, outcome: ChildResult) -> CheckResult:
    if outcome.error:
        return failed(
            "slurm accounting",
            _unanswered("sacct", outcome, _timeout(ctx)),
            "a job that dies is noticed only through sacct: enable accounting (slurmdbd) or ask the cluster admins",
            "slurm",
        )
    jobs = len([line for line in outcome.stdout.splitlines() if line.strip()])
    return ok("slurm accounting", f"sacct answers ({jobs} job(s) in the last 10 minutes)", "slurm")


def check_slurm(ctx: DoctorContext) -> list[CheckResult]:
    """``sinfo``/``sbatch``/``sacct`` on PATH and answering; skipped with the reason where there is no SLURM."""
    missing = [cmd for cmd in COMMANDS if shutil.which(cmd) is None]
    if len(missing) == len(COMMANDS):
        return [
            skipped(
                "slurm",
                "no SLURM here (sinfo, sbatch, sacct not on PATH)",
                "slurm",
                "run on a SLURM login or compute node, or load the slurm module",
            )
        ]
    if missing:
        return [failed("slurm", f"{', '.join(missing)} not on PATH", "load the slurm module or fix PATH", "slurm")]
    since = (datetime.now() - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S")
    calls = (["sinfo", "-h", "-o", "%P|%a|%D|%G"], ["sacct", "-n", "-X", "-o", "JobID", "-S", since])
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:  # both at once: at most CALL_S in all
        sinfo, sacct = pool.map(lambda argv: run_command(argv, _timeout(ctx)), calls)
    return [_cluster_row(ctx, sinfo), _accounting_row(ctx, sacct)]
