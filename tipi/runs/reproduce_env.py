"""What differs between a run's recording and where it is reproduced, and a checkout of its recorded commit.

One table, before anything runs: the git commit and uncommitted changes of
the launch directory's repository, the versions run.json records, the host,
the device, the data folder's fingerprint, the seed, ``run.deterministic``, the
config tree. After the run the same rows compare the two records.
``--at-commit`` checks the recorded commit out with ``git worktree`` in a
temporary directory (removed afterwards) and applies the run's ``git.diff``
when it kept one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tipi.core.provenance import DIFF_FILE, cpu_model, data_fingerprint
from tipi.core.record import git_state_at, installed_versions
from tipi.runs.errors import RunsError
from tipi.runs.reproduce_plan import Plan

VERSION_ORDER = ("python", "torch", "tipi", "hydra-core", "omegaconf", "wandb", "submitit")


def row(what: str, recorded: Any, now: Any, same: bool | None = None) -> dict[str, Any]:
    """One row of a difference table; ``same`` defaults to the two texts being equal."""
    recorded, now = _text(recorded), _text(now)
    return {"what": what, "recorded": recorded, "now": now, "same": recorded == now if same is None else same}


def _text(value: Any) -> str:
    return "(not recorded)" if value is None else str(value)


def git_text(git: Mapping[str, Any] | None) -> tuple[str | None, str | None]:
    """(commit, uncommitted changes) as a table shows them."""
    if not git:
        return None, "not a git repository"
    if git.get("text"):  # this machine's, before the run: said as it is, not as a record says it
        return git.get("commit"), str(git["text"])
    if not git.get("dirty"):
        return git.get("commit"), "none"
    kept = f"kept in {git['diff']} ({git.get('diff_bytes')} bytes)" if git.get("diff") else "not kept"
    return git.get("commit"), f"yes ({kept})"


def device_text(device: Mapping[str, Any] | None) -> str | None:
    """``cpu: AMD EPYC, 1 thread(s)``."""
    if not device:
        return None
    return f"{device.get('type')}: {device.get('name')}, {device.get('threads')} thread(s)"


def data_text(data: Mapping[str, Any] | None) -> str | None:
    """``/data/x: 312 files, 4.1 MB`` (``at least`` when the count stopped at its bound)."""
    if not data:
        return "no data folder (generated from the config)"
    if data.get("error"):
        return f"{data.get('root')}: {data['error']}"
    bound = "" if data.get("complete", True) else "at least "
    return f"{data.get('root')}: {bound}{data.get('files')} files, {data.get('bytes')} bytes"


def environment_rows(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows comparing two records (or a record and ``here``): git, versions, host, device, data."""
    (old_commit, old_dirty), (new_commit, new_dirty) = git_text(old.get("git")), git_text(new.get("git"))
    same_commit = (new_commit or "").split(" ")[0] == (old_commit or "")  # "<commit> (in a worktree)" is the same
    applied = (new.get("git") or {}).get("applied")  # --at-commit: the run's own diff, on its commit
    rows = [
        row("git commit", old_commit, new_commit, same=same_commit),
        row("uncommitted changes", old_dirty, new_dirty, same=True if applied else None),
    ]
    old_v, new_v = old.get("versions") or {}, new.get("versions") or {}
    names = [n for n in VERSION_ORDER if n in old_v or n in new_v]
    names += sorted((set(old_v) | set(new_v)) - set(names))
    rows += [row(name, old_v.get(name), new_v.get(name)) for name in names]
    rows.append(row("host", old.get("host"), new.get("host")))
    old_dev, new_dev = device_text(old.get("device")), new.get("device_text") or device_text(new.get("device"))
    rows.append(row("device", old_dev, new_dev, same=None if "device_text" not in new else new["device_same"]))
    rows.append(row("data", data_text(old.get("data")), data_text(new.get("data"))))
    return rows


def here(plan: Plan, commit_note: str | None = None) -> dict[str, Any]:
    """This machine as a record would describe it, for the table before the run."""
    from tipi.distributed.settings import cuda_present

    old = plan.original.record
    git = git_state_at(str(plan.cwd)) if plan.cwd.is_dir() else {}
    if git:
        git["text"] = "yes (as they are in the working tree now)" if git.get("dirty") else "none"
    if commit_note:
        kept = (plan.original.run_dir / DIFF_FILE).is_file()
        git = {"commit": commit_note, "text": f"the run's {DIFF_FILE}, applied" if kept else "none", "applied": kept}
    device = old.get("device") or {}
    threads = os.environ.get("OMP_NUM_THREADS", "")  # torch's thread count when set; else torch decides
    cuda = cuda_present()
    text = f"cpu: {cpu_model()}, " + (f"{threads} thread(s)" if threads.isdigit() else "torch's default threads")
    text += "; CUDA present" if cuda else ""
    same = None if cuda or not threads.isdigit() else text == device_text(device)
    data = old.get("data")
    return {
        "git": git,
        "versions": installed_versions(),
        "host": socket.gethostname() if not plan.launcher else f"a {plan.launcher} node",
        "device_text": text,
        "device_same": same,
        "data": data_fingerprint(data["root"]) if isinstance(data, dict) and data.get("root") else None,
    }


def run_rows(plan: Plan, where: Callable[[str], str] = str) -> list[dict[str, Any]]:
    """Seed, determinism, config tree and overrides: what the command itself changes or keeps.

    ``where`` maps a config directory into the checkout ``--at-commit`` makes.
    """
    old = plan.original.record
    given = next((o.split("=", 1)[1] for o in plan.overrides if o.startswith("run.deterministic=")), None)
    recorded = old.get("deterministic")
    recorded_text = None if recorded is None else str(bool(recorded)).lower()
    now = (
        given.lower()
        if given is not None
        else recorded_text or str(plan.original.config.get("run", {}).get("deterministic", False)).lower()
    )
    rows = [
        row("seed", old.get("seed"), plan.seed(), same=str(old.get("seed")) == str(plan.seed())),
        row("run.deterministic", recorded_text, now),
    ]
    recorded_dirs = [str(s.get("path")) for s in plan.original.config_sources() if s.get("schema") == "file"]
    used = [where(d) for d in plan.config_dirs] + [where(d) for d in recorded_dirs if d not in plan.config_dirs]
    rows.append(row("config tree", " ".join(recorded_dirs) or "tipi's own", " ".join(used) or "tipi's own"))
    rows.append(row("overrides added", "", " ".join(plan.extra) or "none", same=not plan.extra))
    return rows


def determinism_note(record: Mapping[str, Any]) -> str:
    """What ``run.deterministic`` of the original means for the comparison."""
    device = (record.get("device") or {}).get("type")
    if record.get("deterministic"):
        return (
            "the original ran with run.deterministic=true: on the same hardware and versions, metrics and "
            "weights should repeat bit for bit"
        )
    if record.get("deterministic") is None:
        return "the original did not record run.deterministic (a run from before it existed)"
    if device == "cpu":
        return (
            "the original ran with run.deterministic=false on the CPU: CPU results usually repeat exactly "
            "with the same thread count; set run.deterministic=true to be sure"
        )
    return (
        f"the original ran with run.deterministic=false on {device or 'its device'}: GPU kernels may sum in "
        "another order each run, so small differences are expected; run.deterministic=true repeats exactly"
    )


def warnings(plan: Plan) -> list[str]:
    """What the reader should know before trusting the comparison."""
    record = plan.original.record
    git = record.get("git") or {}
    notes = []
    if record.get("status") != "succeeded":
        notes.append(f"the original did not succeed (status {record.get('status')}): its results are partial")
    if git.get("dirty") and not git.get("diff"):
        notes.append(
            "the original ran with uncommitted changes that were not kept "
            f"({git.get('diff_skipped') or 'a run from before tipi kept them'}): the code may not be what ran"
        )
    elif git.get("dirty") and not plan.at_commit:
        notes.append(
            f"the original ran with uncommitted changes (kept in {DIFF_FILE}); they are applied only with --at-commit"
        )
    if not plan.cwd.is_dir():
        notes.append(f"the launch directory {plan.cwd} is gone: the run starts in the current directory")
    return notes


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120, check=False)


def recorded_commit(plan: Plan) -> tuple[Path, str]:
    """(repository root, commit) to check out for ``--at-commit``; a :class:`RunsError` if there is none."""
    git = plan.original.record.get("git") or {}
    commit = git.get("commit")
    candidates = [Path(str(git["root"]))] if git.get("root") else []
    candidates += [plan.cwd, Path.cwd()]
    root = None
    for candidate in candidates:
        if candidate.is_dir():
            found = _git(candidate, "rev-parse", "--show-toplevel")
            if found.returncode == 0:
                root = Path(found.stdout.strip())
                break
    if not commit:
        raise RunsError(
            "--at-commit: the run recorded no git commit (it was not launched inside a git repository)",
            hint="Reproduce it without --at-commit.",
        )
    if root is None:
        raise RunsError(
            f"--at-commit: neither the run's launch directory ({plan.cwd}) nor the current one is inside a git "
            "repository",
            hint="Run it from a clone of the run's repository, or without --at-commit.",
        )
    if _git(root, "cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        raise RunsError(
            f"--at-commit: commit {commit} is not in the repository {root}",
            hint="Fetch it (git fetch --all), or reproduce without --at-commit.",
        )
    return root, str(commit)


@contextlib.contextmanager
def worktree(root: Path, commit: str, diff: Path | None) -> Iterator[Path]:
    """A ``git worktree`` of ``commit`` in a temporary directory (``diff`` applied); removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix="tipi-reproduce-"))
    checkout = tmp / "checkout"
    added = _git(root, "worktree", "add", "--detach", "--quiet", str(checkout), commit)
    try:
        if added.returncode != 0:
            raise RunsError(f"--at-commit: git worktree add failed: {added.stderr.strip()}")
        if diff is not None:
            applied = _git(checkout, "apply", "--binary", "--whitespace=nowarn", str(diff))
            if applied.returncode != 0:
                raise RunsError(
                    f"--at-commit: the run's uncommitted changes ({diff}) do not apply to {commit[:12]}: "
                    f"{applied.stderr.strip()}",
                    hint="Reproduce without --at-commit, from a tree that holds those changes.",
                )
        yield checkout
    finally:
        _git(root, "worktree", "remove", "--force", str(checkout))
        shutil.rmtree(tmp, ignore_errors=True)
        _git(root, "worktree", "prune")


def mapper(root: Path, checkout: Path | str) -> Callable[[str], str]:
    """A function that moves a path inside ``root`` to the same place in ``checkout`` (others stay).

    ``checkout`` may be a placeholder (``<checkout>``) to show a command before the checkout exists.
    """

    def where(path: str) -> str:
        try:
            inside = Path(path).resolve().relative_to(root.resolve())
        except ValueError:
            return path
        return str(checkout / inside) if isinstance(checkout, Path) else f"{checkout}/{inside}".rstrip("/.")

    return where
