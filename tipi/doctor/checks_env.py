"""Checks of the software and the disk: package versions, the torch build, torchvision, the output folders."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from tipi.doctor.context import DoctorContext
from tipi.doctor.result import GIB, CheckResult, failed, ok, skipped, warning

MIN_PYTHON = (3, 11)
# What a tipi run imports (pyproject's dependencies), in the order a researcher reads them.
DISTRIBUTIONS = (
    "tipi",
    "torch",
    "hydra-core",
    "omegaconf",
    "submitit",
    "hydra-submitit-launcher",
    "wandb",
    "rich",
    "numpy",
)
TORCH_INSTALL = "https://pytorch.org/get-started/locally/"
LOW_DISK_GIB, FULL_DISK_GIB = 5.0, 1.0


def check_versions(ctx: DoctorContext) -> list[CheckResult]:
    """Python and the versions of the packages tipi needs (read from metadata: nothing is imported)."""
    found, missing = [f"python {platform.python_version()}"], []
    for dist in DISTRIBUTIONS:
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            missing.append(dist)
    detail = ", ".join(found)
    if sys.version_info < MIN_PYTHON:
        need = ".".join(map(str, MIN_PYTHON))
        return [failed("versions", detail, f"tipi needs Python >= {need}: use a newer interpreter", "versions")]
    if missing:
        return [
            failed(
                "versions",
                f"{detail}; missing: {', '.join(missing)}",
                f"pip install {' '.join(missing)} (or pip install -e . in the tipi checkout)",
                "versions",
            )
        ]
    return [ok("versions", detail, "versions")]


def _cudnn(version: int | None) -> str:
    if not version:
        return "no cuDNN"
    if version >= 90000:  # cuDNN 9 numbers itself major*10000 + minor*100 + patch
        return f"cuDNN {version // 10000}.{version // 100 % 100}.{version % 100}"
    return f"cuDNN {version // 1000}.{version // 100 % 10}.{version % 100}"


def _accelerator_node() -> str | None:
    from tipi.permanences.device import _ACCELERATOR_NODES

    return next((node for node in _ACCELERATOR_NODES if os.path.exists(node)), None)


def check_torch(ctx: DoctorContext) -> list[CheckResult]:
    """Whether torch loads, and its build: CPU, CUDA (with CUDA and cuDNN versions) or ROCm."""
    outcome = ctx.torch()
    if outcome.error:
        return [
            failed(
                "torch",
                f"torch does not load: {outcome.error}",
                f"install a torch build for this machine ({TORCH_INSTALL})",
                "versions",
            )
        ]
    data = outcome.data
    if data.get("cuda_version"):
        nccl = ", NCCL" if data.get("nccl") else ""
        build = f"CUDA build: CUDA {data['cuda_version']}, {_cudnn(data.get('cudnn'))}{nccl}"
    elif data.get("hip"):
        build = f"ROCm build: HIP {data['hip']}"
    else:
        build = "CPU build"
        node = _accelerator_node()
        if node:
            return [
                warning(
                    "torch",
                    f"{data['version']}, {build}, but this machine has a GPU ({node})",
                    f"install a CUDA build of torch ({TORCH_INSTALL}), e.g. "
                    "pip install torch --index-url https://download.pytorch.org/whl/cu126",
                    "versions",
                )
            ]
    return [ok("torch", f"{data['version']}, {build}", "versions")]


def check_torchvision(ctx: DoctorContext) -> list[CheckResult]:
    """Whether torchvision (when installed) loads beside this torch: a CPU torch with a CUDA wheel does not."""
    if importlib.util.find_spec("torchvision") is None:
        return [skipped("torchvision", "not installed (tipi does not need it)", "versions")]
    from tipi.doctor.procs import run_worker

    outcome = run_worker("torchvision", timeout=ctx.options.timeout)
    data = outcome.data
    remedy = (
        "install the torchvision built for this torch, from the same index "
        "(https://pytorch.org/get-started/previous-versions/ lists the pairs)"
    )
    if outcome.error:
        tv = _dist_version("torchvision")
        return [
            failed(
                "torchvision",
                f"torchvision {tv} cannot load beside torch {_dist_version('torch')}: {outcome.error}",
                remedy,
                "versions",
            )
        ]
    if data.get("cuda") != data.get("torch_cuda"):
        return [
            failed(
                "torchvision",
                f"torchvision {data['version']} is built for CUDA {data.get('cuda')}, "
                f"torch {data['torch']} for CUDA {data.get('torch_cuda')}",
                remedy,
                "versions",
            )
        ]
    return [ok("torchvision", f"{data['version']}, loads beside torch {data['torch']}", "versions")]


def _dist_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _writable(folder: Path) -> str | None:
    """None when a file can be created in ``folder`` (or in its nearest existing parent), else why not."""
    target = folder
    while not target.exists() and target != target.parent:
        target = target.parent
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".tipi-doctor-"):
            return None
    except OSError as exc:
        return f"{target}: {exc.strerror or exc}"


def check_output(ctx: DoctorContext) -> list[CheckResult]:
    """``outputs/`` and ``multirun/`` (in the working directory) writable, and the free disk space there."""
    cwd = ctx.options.cwd
    problems = [why for why in (_writable(cwd / "outputs"), _writable(cwd / "multirun")) if why]
    free = shutil.disk_usage(cwd).free / GIB
    detail = f"{cwd}/outputs and multirun writable, {free:.1f} GiB free"
    if problems:
        return [
            failed(
                "output",
                f"cannot write: {'; '.join(problems)}",
                "run from a folder you can write to, or set hydra.run.dir / hydra.sweep.dir",
                "output",
            )
        ]
    if free < FULL_DISK_GIB:
        return [failed("output", detail, "free disk space: checkpoints and WandB files need room", "output")]
    if free < LOW_DISK_GIB:
        return [warning("output", detail, "little free disk: checkpoints of a long sweep may not fit", "output")]
    return [ok("output", detail, "output")]
