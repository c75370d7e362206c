"""What ``run.json`` records so that a run can be repeated and compared (``tipi-runs reproduce``).

A cheap fingerprint of the data folder, the uncommitted changes of the launch
directory's repository, the device and CPU, and ``run.deterministic``. Every
run pays for this before its first step, so each part is bounded: the
fingerprint counts at most :data:`MAX_FILES` files (a stat each, no reading),
the diff is kept only up to :data:`MAX_DIFF_BYTES`, and the repository is asked
once per process (the jobs of a multirun share the code their process loaded).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from tipi.atomic import atomic_write

MAX_FILES = 5_000  # about 17 ms of stat calls on a local disk (300 files: 1 ms); more: "at least" this many
MAX_DIFF_BYTES = 1 << 20  # a larger diff is not kept (its size is recorded instead)
DIFF_FILE = "git.diff"  # <run dir>/git.diff: `git diff HEAD` of the launch directory's repository
CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs to be deterministic (PyTorch's reproducibility notes)


def data_fingerprint(root: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"root", "files", "bytes", "complete"}`` of the folder at ``root``: its file count and total size.

    Not a checksum: a re-encoded, added or removed file changes it, a file
    rewritten to the same size does not. Symlinked folders below ``root`` are
    not followed (a loop would never end); a folder of more than
    :data:`MAX_FILES` files is counted up to there (``complete`` false).
    """
    path = Path(root).expanduser().absolute()
    files = size = 0
    stack = [path]
    if not path.is_dir():
        return {"root": str(path), "files": 0, "bytes": 0, "complete": False, "error": "not a folder"}
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file():
                        files += 1
                        size += entry.stat().st_size
                        if files >= MAX_FILES:
                            return {"root": str(path), "files": files, "bytes": size, "complete": False}
        except OSError:  # an unreadable subfolder: the data permanence reports what it cannot read
            continue
    return {"root": str(path), "files": files, "bytes": size, "complete": True}


@functools.cache
def _diff_of(cwd: str) -> tuple[bytes | None, int]:
    """``git diff HEAD`` (tracked files, binary-safe) of the repository at ``cwd``: (text, size).

    The text is None when it exceeds :data:`MAX_DIFF_BYTES` (its size is then
    a lower bound) or git failed (size 0). Read in bounded chunks: a huge
    diff is never held in memory.
    """
    args = ["git", "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--no-textconv"]
    args += ["--src-prefix=a/", "--dst-prefix=b/"]  # whatever diff.noprefix says: `git apply` reads these
    try:
        proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError:
        return None, 0
    assert proc.stdout is not None
    text = proc.stdout.read(MAX_DIFF_BYTES + 1)
    if len(text) > MAX_DIFF_BYTES:
        proc.kill()
        proc.wait()
        return None, len(text)
    try:
        ok = proc.wait(timeout=10) == 0
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        ok = False
    return (text, len(text)) if ok else (None, 0)


def keep_diff(run_dir: Path, cwd: str) -> dict[str, Any]:
    """Write the uncommitted changes of ``cwd``'s repository to ``<run_dir>/git.diff``; what to record in ``git``.

    Untracked files are not in it (a new module not yet added is not kept).
    """
    text, size = _diff_of(cwd)
    if text is None:
        return {"diff_skipped": f"larger than {MAX_DIFF_BYTES} bytes" if size else "git diff failed"}
    atomic_write(Path(run_dir) / DIFF_FILE, lambda f: f.write(text))
    return {"diff": DIFF_FILE, "diff_bytes": size}


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_device(device: Any) -> dict[str, Any]:
    """A ``torch.device`` as run.json records it: type, model name, and torch's CPU threads."""
    import torch

    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        name = torch.cuda.get_device_name(device.index if device.index is not None else 0)
    elif kind == "mps":
        name = "Apple MPS"
    else:
        name = cpu_model()
    return {"type": kind, "name": name, "threads": torch.get_num_threads()}


_DETERMINISTIC = {"set_by_tipi": False}  # one process runs many jobs (launcher=local): undo what a job set


def set_deterministic(on: bool) -> None:
    """``run.deterministic``: PyTorch's deterministic algorithms, cuDNN without autotuning, cuBLAS's workspace.

    With ``on``, an operation without a deterministic implementation raises
    (PyTorch names it) instead of giving results that vary from run to run.
    Off undoes what an earlier job of the same process turned on, and
    otherwise touches nothing (torch is not even imported).
    """
    if not on and not _DETERMINISTIC["set_by_tipi"]:
        return
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)  # read when cuBLAS starts: before a step
    import torch

    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = False
    _DETERMINISTIC["set_by_tipi"] = on


def run_provenance(cfg: Any) -> dict[str, Any]:
    """The fields a run adds to run.json at its start: ``deterministic``, and ``data`` when it reads a folder.

    The folder is ``permanences.data.root`` (``data.root=...``); generated
    data (``data=shapes``) has none, its config is its fingerprint.
    """
    from omegaconf import OmegaConf

    fields: dict[str, Any] = {"deterministic": OmegaConf.select(cfg, "run.deterministic", default=False) is True}
    try:
        root = OmegaConf.select(cfg, "permanences.data.root", default=None)
    except Exception:  # noqa: BLE001 - an unresolvable root: the data permanence reports it, not the record
        root = None
    if isinstance(root, (str, os.PathLike)) and str(root):
        fields["data"] = data_fingerprint(root)
    return fields
