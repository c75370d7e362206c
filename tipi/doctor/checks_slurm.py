"""The SLURM check: the commands, the partitions and their GPUs, the SBATCH_* settings, accounting."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tipi.core.errors import did_you_mean
from tipi.doctor.context import DoctorContext
from tipi.doctor.procs import run_command
from tipi.doctor.result import CheckResult, failed, ok, skipped

COMMANDS = ("sinfo", "sbatch", "sacct")


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


def _cluster_row(ctx: DoctorContext) -> CheckResult:
    outcome = run_command(["sinfo", "-h", "-o", "%P|%a|%D|%G"], ctx.options.timeout)
    if outcome.error:
        return failed(
            "slurm",
            f"sinfo does not answer: {outcome.error}",
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


def _accounting_row(ctx: DoctorContext) -> CheckResult:
    since = (datetime.now() - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S")
    outcome = run_command(["sacct", "-n", "-X", "-o", "JobID", "-S", since], ctx.options.timeout)
    if outcome.error:
        return failed(
            "slurm accounting",
            f"sacct does not answer: {outcome.error}",
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
    return [_cluster_row(ctx), _accounting_row(ctx)]
